"""What every ``litejobs`` command shares: the --config/--database options, the
context that reads the config and imports the app, and one-line errors.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from litejobs.app import App
from litejobs.config import DEFAULT_FILE, load_config
from litejobs.errors import LitejobsError
from litejobs.job import Job
from litejobs.store import Store, is_url, open_store, same_database, shown
from litejobs.validate import INT64_MAX
from litejobs.worker import load_app

__all__ = ["JOB_ID", "Context", "F", "common_options", "errors", "fail", "job_or_fail",
           "json_option", "short"]

F = TypeVar("F", bound=Callable[..., Any])
#: A job id: any whole number SQLite can hold (an unknown one is reported as such).
JOB_ID = click.IntRange(-INT64_MAX - 1, INT64_MAX)


def fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def errors(fn: F) -> F:
    """Turn litejobs and value errors into one clear line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LitejobsError, ValueError, TypeError, OverflowError) as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def common_options(fn: F) -> F:
    fn = click.option("--database", "database", type=click.Path(dir_okay=False),
                      help="The SQLite file (overrides LITEJOBS_DATABASE and the config).")(fn)
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help=f"A litejobs.toml (default: ./{DEFAULT_FILE} if present).")(fn)
    return fn


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def _debug() -> bool:
    """Full tracebacks wanted (``LITEJOBS_DEBUG=1``, or ``litejobs run -v``)?"""
    return os.environ.get("LITEJOBS_DEBUG", "") not in ("", "0")


def _raised_at(exc: BaseException) -> str | None:
    """``file:line`` where ``exc`` was raised in the user's code: the innermost frame outside
    the import machinery, litejobs, the standard library and installed packages."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    import sysconfig
    import traceback

    skip = tuple({os.path.dirname(os.path.abspath(__file__)), sysconfig.get_path("stdlib"),
                  sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if not f.filename.startswith("<")
            and not os.path.abspath(f.filename).startswith(skip)]
    real = [f for f in frames if not f.filename.startswith("<")]
    chosen = ours[-1] if ours else (real[-1] if real else None)
    return None if chosen is None else f"{chosen.filename}:{chosen.lineno}"


def _import_failure(spec: str, exc: Exception) -> click.ClickException:
    """One line for an app that cannot be imported: the exception, where the user's code raised
    it, and for a missing dependency the ``pip install`` that fixes it."""
    cause = exc
    if isinstance(exc, LitejobsError):
        if not isinstance(exc.__cause__, Exception):
            return fail(str(exc))  # load_app's own refusal (bad spec, not an App)
        cause = exc.__cause__
    if _debug():
        import traceback

        traceback.print_exception(cause, file=sys.stderr)
    at = _raised_at(cause)
    where = f" (at {at})" if at else ""
    text = f"cannot import app {spec!r}: {type(cause).__name__}: {cause}{where}"
    module = spec.partition(":")[0]
    if module.endswith(".py"):
        module = os.path.splitext(os.path.basename(module))[0]
    missing = cause.name if isinstance(cause, ModuleNotFoundError) else None
    if missing and (missing == module or module.startswith(missing + ".")):
        return fail(f"{text}. Run from your project's directory, or fix the 'app' setting "
                     "(--app, LITEJOBS_APP or app = in litejobs.toml)")
    if missing and missing.split(".")[0] != module.split(".")[0]:
        return fail(f"{text}. A dependency is missing: pip install {missing.split('.')[0]} "
                     f"(into the environment litejobs runs in: {sys.executable})")
    hint = "" if _debug() else "; set LITEJOBS_DEBUG=1 for the full traceback"
    return fail(f"{text}{hint}")


class Context:
    def __init__(self, config_path: str | None, database: str | None,
                 app_spec: str | None = None, **flags: Any) -> None:
        self.config = load_config(config_path, database=database, app=app_spec, **flags)
        self._app: App | None = None

    @property
    def app_spec(self) -> str | None:
        return self.config.app

    def app(self) -> App:
        if self._app is None:
            if not self.config.app:
                raise fail("no app given: pass --app module:attr, set LITEJOBS_APP, or set "
                            "app = in litejobs.toml (`litejobs init` writes one)")
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                app = load_app(self.config.app)
            except Exception as exc:
                raise _import_failure(self.config.app, exc) from None
            for name, table in self.config.cron.items():
                if name not in app.cron_specs:
                    app.add_cron_table(name, table, self.config.source or "litejobs.toml")
            self._app = app
        return self._app

    def database(self, check_app: bool = False) -> str:
        """The database path; with ``check_app``, refuse when it differs from the app's."""
        configured = self.config.database
        if (configured is None or check_app) and self.config.app:
            app_path = self.app().database
            if configured is not None and not same_database(configured, app_path):
                raise fail(
                    f"the database {shown(configured)} (from the flag, LITEJOBS_DATABASE or "
                    f"the config) differs from {shown(app_path)}, the one the app "
                    f"{self.config.app} "
                    "writes; workers would read another file than your web app. Make "
                    "them the same"
                )
            return app_path
        if configured is None:
            raise fail("no database given: pass --database PATH, set LITEJOBS_DATABASE, or "
                        "set database = in litejobs.toml")
        return configured

    def existing_database(self) -> str:
        """The database path, refusing one that does not exist (a typo must not quietly
        create an empty file that every command then reports as empty)."""
        path = self.database()
        if not is_url(path) and not os.path.exists(path):
            raise fail(f"no database at {path}; check --database / LITEJOBS_DATABASE / the "
                        "config (it is created by the first enqueue or `litejobs run`)")
        return path

    def store(self) -> Store:
        store: Store = open_store(self.existing_database(), durability=self.config.durability)
        return store

    def job_app(self) -> App:
        """An App to hold Job handles: the configured one, or a bare one on the database."""
        path = self.existing_database()
        if self.config.app and self.config.database is None:
            return self.app()
        return App(path, durability=self.config.durability)


def short(text: str | None, width: int) -> str:
    if not text:
        return ""
    line = text.splitlines()[0] if text.splitlines() else text
    return line if len(line) <= width else line[: width - 1] + "…"


def job_or_fail(app: App, job_id: int) -> Job:
    job = app.get_job(job_id)
    if job is None:
        raise fail(f"no job with id {job_id} (never enqueued, or pruned after retention)")
    return job
