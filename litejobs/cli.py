"""The ``litejobs`` command.

Every command takes ``--config`` and ``--database`` after its name; those that print data take
``--json``. Errors are one line naming the problem and what to do, with a non-zero exit.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from litejobs.app import App
from litejobs.config import DEFAULT_FILE, load_config, parse_duration, render_template
from litejobs.cron import CronEntry
from litejobs.errors import LitejobsError
from litejobs.job import Job, iso
from litejobs.store import Store
from litejobs.task import CallOptions, Prepared
from litejobs.ticker import build_entries
from litejobs.validate import INT64_MAX, MAX_WORKERS, check_name
from litejobs.worker import load_app

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
#: A job id: any whole number SQLite can hold (an unknown one is reported as such).
_JOB_ID = click.IntRange(-INT64_MAX - 1, INT64_MAX)


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _errors(fn: F) -> F:
    """Turn litejobs and value errors into one clear line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LitejobsError, ValueError, TypeError, OverflowError) as exc:
            raise _fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _common(fn: F) -> F:
    fn = click.option("--database", "database", type=click.Path(dir_okay=False),
                      help="The SQLite file (overrides LITEJOBS_DATABASE and the config).")(fn)
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                      help=f"A litejobs.toml (default: ./{DEFAULT_FILE} if present).")(fn)
    return fn


def _json_option(fn: F) -> F:
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
            return _fail(str(exc))  # load_app's own refusal (bad spec, not an App)
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
        return _fail(f"{text}. Run from your project's directory, or fix the 'app' setting "
                     "(--app, LITEJOBS_APP or app = in litejobs.toml)")
    if missing and missing.split(".")[0] != module.split(".")[0]:
        return _fail(f"{text}. A dependency is missing: pip install {missing.split('.')[0]} "
                     f"(into the environment litejobs runs in: {sys.executable})")
    hint = "" if _debug() else "; set LITEJOBS_DEBUG=1 for the full traceback"
    return _fail(f"{text}{hint}")


class _Context:
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
                raise _fail("no app given: pass --app module:attr, set LITEJOBS_APP, or set "
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
            app_path = self.app().store.path
            if configured is not None and os.path.realpath(configured) != os.path.realpath(
                    app_path):
                raise _fail(
                    f"the database {configured} (from the flag, LITEJOBS_DATABASE or the "
                    f"config) differs from {app_path}, the one the app {self.config.app} "
                    "writes; workers would read another file than your web app. Make "
                    "them the same"
                )
            return app_path
        if configured is None:
            raise _fail("no database given: pass --database PATH, set LITEJOBS_DATABASE, or "
                        "set database = in litejobs.toml")
        return configured

    def existing_database(self) -> str:
        """The database path, refusing one that does not exist (a typo must not quietly
        create an empty file that every command then reports as empty)."""
        path = self.database()
        if not os.path.exists(path):
            raise _fail(f"no database at {path}; check --database / LITEJOBS_DATABASE / the "
                        "config (it is created by the first enqueue or `litejobs run`)")
        return path

    def store(self) -> Store:
        return Store(self.existing_database(), durability=self.config.durability)

    def job_app(self) -> App:
        """An App to hold Job handles: the configured one, or a bare one on the database."""
        path = self.existing_database()
        if self.config.app and self.config.database is None:
            return self.app()
        return App(path, durability=self.config.durability)


def _startup(ctx: _Context, need_app: bool = True) -> tuple[str, App | None, list[CronEntry]]:
    """What ``check`` and ``run`` both validate, so that they accept exactly the same setups:
    the config (already read), the database's place, the app's import and its cron entries.
    Returns the database path, the app (None when none is configured and not ``need_app``)
    and the cron entries."""
    path = ctx.database(check_app=True)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise _fail(f"the database's directory {folder} does not exist; create it (mkdir -p "
                    f"{folder}) or point --database / LITEJOBS_DATABASE / database = elsewhere")
    if not ctx.config.app and not need_app:
        return path, None, []
    app = ctx.app()
    entries = build_entries(app)
    for e in entries:  # what the first fire will build, built now (payload cap, task defaults)
        t = app.tasks[e.task]
        try:
            app.build_job(Prepared(e.task, e.args, e.kwargs,
                                   CallOptions(queue=e.queue, priority=e.priority),
                                   t.defaults, t.param_names), time.time())
        except (TypeError, ValueError) as exc:
            raise _fail(f"cron entry {e.name!r} ({e.source}): {exc}") from None
    for warning in _window_warnings(app, ctx.config.retention):
        click.echo(f"warning: {warning}", err=True)
    return path, app, entries


def _secs(value: float) -> str:
    return f"{value:.0f}s" if value >= 1 else f"{value:g}s"


def _window_warnings(app: App, retention: float) -> list[str]:
    """Tasks whose idempotency window outlasts ``retention``: pruning deletes a finished job
    while its key should still return it, so a later enqueue runs again."""
    out = []
    for name, t in sorted(app.tasks.items()):
        window = t.defaults.unique_for
        if window is not None and window > retention:
            out.append(f"task {name}: unique_for={_secs(window)} is longer than retention="
                       f"{_secs(retention)}; finished jobs are pruned after retention, so a key "
                       "repeated after that runs again. Raise retention or lower unique_for")
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="litejobs")
def main() -> None:
    """litejobs: background jobs and cron in one SQLite file."""


@main.command()
@_common
@click.option("--app", "app_spec", help="Import path of the App, module:attr (or file.py:attr).")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS),
              help="Worker processes (default 2).")
@click.option("--queues", help="Serve only these queues, comma-separated (default: all).")
@click.option("--grace", type=float, help="Seconds running jobs get on SIGTERM (default 30).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@_errors
def run(config_path: str | None, database: str | None, app_spec: str | None,
        workers: int | None, queues: str | None, grace: float | None, verbose: bool) -> None:
    """Run the supervisor: a pool of workers, the cron ticker and maintenance."""
    from litejobs.supervisor import Supervisor

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s litejobs[%(process)d] %(levelname)s %(message)s")
    if verbose:
        os.environ.setdefault("LITEJOBS_DEBUG", "1")
    ctx = _Context(config_path, database, app_spec, workers=workers, grace=grace)
    path, app, _ = _startup(ctx)
    assert app is not None
    config = replace(ctx.config, database=path)
    assert ctx.app_spec is not None
    queue_list = ([check_name("--queues name", q.strip()) for q in queues.split(",")
                   if q.strip()] if queues else None)
    supervisor = Supervisor(app, ctx.app_spec, config, queue_list)
    # Workers import the app while the file is checked (quick_check reads all of it).
    supervisor.spawn_workers()
    try:
        Store(path).verify()
    except BaseException:
        supervisor.abandon()
        raise
    sys.exit(supervisor.run())


@main.command()
@_common
@click.option("--app", "app_spec", help="Import path of your App, written into the file.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@_errors
def init(config_path: str | None, database: str | None, app_spec: str | None,
         force: bool) -> None:
    """Write a commented litejobs.toml."""
    path = config_path or DEFAULT_FILE
    if os.path.exists(path) and not force:
        raise _fail(f"{path} already exists; pass --force to overwrite it")
    try:
        # "x" without --force: never overwrite, even a file created since the check above
        with open(path, "w" if force else "x", encoding="utf-8") as f:
            f.write(render_template(app_spec, database))
    except FileExistsError:
        raise _fail(f"{path} already exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror}; create its directory or choose "
                    "another --config path") from None
    click.echo(f"wrote {path}; edit app = and database =, then run `litejobs check`")


@main.command()
@_common
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@_errors
def check(config_path: str | None, database: str | None, app_spec: str | None) -> None:
    """Validate the config, the app import and the database file."""
    ctx = _Context(config_path, database, app_spec)
    path, app, entries = _startup(ctx, need_app=False)
    Store(path).verify()
    if app is not None:
        click.echo(f"ok: app {ctx.config.app} with {len(app.tasks)} task(s): "
                   f"{', '.join(sorted(app.tasks)) or 'none'}")
        if entries:
            click.echo(f"ok: {len(entries)} cron entr{'y' if len(entries) == 1 else 'ies'}: "
                       f"{', '.join(e.name for e in entries)}")
    click.echo(f"ok: database {path}")


@main.command()
@_common
@click.argument("task")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@click.option("--args", "args_json", default="[]", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("--delay", type=float, help="Run no sooner than this many seconds from now.")
@click.option("--queue", help="Queue (default: the task's).")
@click.option("--priority", type=click.IntRange(-100, 100), help="-100..100, higher first.")
@click.option("--key", help="Idempotency key.")
@_json_option
@_errors
def enqueue(config_path: str | None, database: str | None, task: str, app_spec: str | None,
            args_json: str, kwargs_json: str, delay: float | None, queue: str | None,
            priority: int | None, key: str | None, as_json: bool) -> None:
    """Enqueue TASK (a registered task name); prints the new job's id."""
    ctx = _Context(config_path, database, app_spec)
    app = ctx.app()
    ctx.database(check_app=True)
    if task not in app.tasks:
        raise _fail(f"unknown task {task!r}; the app {ctx.config.app} has: "
                    f"{', '.join(sorted(app.tasks)) or 'no tasks'}")
    try:
        args = json.loads(args_json)
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise _fail(f"--args/--kwargs must be JSON: {exc}") from None
    except RecursionError:
        raise _fail("--args/--kwargs are nested too deeply for JSON decoding; a stored value "
                    "may be nested at most 200 levels") from None
    if not isinstance(args, list):
        raise _fail("--args must be a JSON array, e.g. '[1, 2]'")
    if not isinstance(kwargs, dict):
        raise _fail('--kwargs must be a JSON object, e.g. \'{"to": "a@b.c"}\'')
    options = {k: v for k, v in (("delay", delay), ("queue", queue), ("priority", priority),
                                 ("key", key)) if v is not None}
    job = app.enqueue(task, args, kwargs, **options)
    click.echo(json.dumps(job.to_dict()) if as_json else str(job.id))


def _short(text: str | None, width: int) -> str:
    if not text:
        return ""
    line = text.splitlines()[0] if text.splitlines() else text
    return line if len(line) <= width else line[: width - 1] + "…"


@main.command()
@_common
@click.option("--state", type=click.Choice(["scheduled", "queued", "running", "succeeded",
                                            "failed", "cancelled"]))
@click.option("--task", help="Only jobs of this task.")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--limit", type=click.IntRange(1, INT64_MAX), default=50, show_default=True)
@_json_option
@_errors
def jobs(config_path: str | None, database: str | None, state: str | None, task: str | None,
         queue: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    ctx = _Context(config_path, database)
    app = ctx.job_app()
    rows = app.store.list_jobs(state=state, task=task, queue=queue, limit=limit)
    items = [Job(app, r) for r in rows]
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in items]))
        return
    if not items:
        click.echo("no jobs")
        return
    click.echo(f"{'ID':>8}  {'STATE':<10} {'TASK':<30} {'QUEUE':<12} {'TRY':>3}  ERROR")
    for j in items:
        click.echo(f"{j.id:>8}  {j.state.value:<10} {_short(j.task, 30):<30} "
                   f"{_short(j.queue, 12):<12} {j.attempt:>3}  {_short(j.error, 60)}")


def _job_or_fail(app: App, job_id: int) -> Job:
    job = app.get_job(job_id)
    if job is None:
        raise _fail(f"no job with id {job_id} (never enqueued, or pruned after retention)")
    return job


@main.command()
@_common
@click.argument("job_id", type=_JOB_ID)
@_json_option
@_errors
def show(config_path: str | None, database: str | None, job_id: int, as_json: bool) -> None:
    """Show one job and its attempts."""
    ctx = _Context(config_path, database)
    job = _job_or_fail(ctx.job_app(), job_id)
    attempts = job.attempts()
    if as_json:
        data = job.to_dict()
        data["attempts"] = [a.to_dict() for a in attempts]
        click.echo(json.dumps(data))
        return
    d = job.to_dict()
    for key in ("id", "task", "queue", "state", "priority", "attempt", "max_attempts", "args",
                "kwargs", "key", "run_at", "created_at", "started_at", "finished_at", "result",
                "error"):
        value = d[key]
        if value is None or value in ([], {}):
            continue
        shown = json.dumps(value) if key in ("args", "kwargs", "result") else value
        click.echo(f"{key:>13}: {shown}")
    for a in attempts:
        click.echo(f"  attempt {a.attempt}: {a.outcome} {iso(a.started_at) or ''} → "
                   f"{iso(a.finished_at) or ''} {_short(a.error, 100)}")
        if a.traceback:
            click.echo("    " + a.traceback.rstrip().replace("\n", "\n    "))


def _filter_options(fn: F) -> F:
    fn = click.option("--since", help="Only jobs created since: a duration ago (2h, 7d) or "
                      "an ISO-8601 time.")(fn)
    fn = click.option("--queue", help="Only jobs of this queue.")(fn)
    fn = click.option("--task", help="Only jobs of this task.")(fn)
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(fn)
    return fn


def _since(text: str | None, flag: str = "--since") -> float | None:
    if text is None:
        return None
    try:
        return time.time() - parse_duration(text, flag)
    except ValueError as exc:
        if text.strip()[:1].isdigit() and not any(c in text for c in "-:T"):
            raise _fail(str(exc)) from None  # a duration, out of range
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"{flag} {text!r} is neither a duration (30m, 2h, 7d) nor an ISO-8601 "
                    "time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _matching_ids(app: App, states: list[str], task: str | None, queue: str | None,
                  since: float | None, before: float | None) -> Iterator[list[int]]:
    """Pages of the ids matching the filters, created in [since, before), in id order.

    "Created before" is the set difference of two id-ordered streams the store already
    serves (all matches, and those created since ``before``); a job inserted between the
    two reads is newer than ``before`` and so lands in the second one too."""
    last_id = 0
    while True:
        ids = app.store.ids_matching(states, task, queue, since, after_id=last_id)
        if not ids:
            return
        if before is not None:
            newer: set[int] = set()
            after = last_id
            while True:
                page = app.store.ids_matching(states, task, queue,
                                              before if since is None else max(since, before),
                                              after_id=after)
                newer.update(i for i in page if i <= ids[-1])
                if not page or page[-1] >= ids[-1]:
                    break
                after = page[-1]
            last_id = ids[-1]
            ids = [i for i in ids if i not in newer]
            if not ids:
                continue
        else:
            last_id = ids[-1]
        yield ids


def _bulk(app: App, verb: str, states: list[str], task: str | None, queue: str | None,
          since: str | None, yes: bool, act: Callable[[list[int]], int],
          older_than: str | None = None) -> None:
    """Count the matching jobs, confirm, then act on them in short batches with progress."""
    cutoff = _since(since)
    before = _since(older_than, "--older-than")
    total = app.store.count_matching(states, task, queue, cutoff)
    if before is not None:
        newer = before if cutoff is None else max(cutoff, before)
        total -= app.store.count_matching(states, task, queue, newer)
    kinds = "/".join(states)
    which = ""
    if since is not None:
        which += f" created since {iso(cutoff)} (newer than {since})"
        if verb == "purge" and older_than is None:
            which += f", i.e. the newest; for the older ones use --older-than {since}"
    if older_than is not None:
        which += f" created before {iso(before)} (older than {older_than})"
    if total == 0:
        click.echo(f"no {kinds} jobs{which} match; nothing to {verb}")
        return
    if not yes:
        click.confirm(f"{verb} {total} {kinds} job(s){which}?", abort=True)
    done = 0
    for ids in _matching_ids(app, states, task, queue, cutoff, before):
        done += act(ids)
        if total > 1000:
            click.echo(f"  {done}/{total}", err=True)
    app.ring(b"c" if verb == "cancel" else b"e")
    click.echo(f"{verb}: {done} job(s)")


@main.command()
@_common
@click.argument("job_id", type=_JOB_ID, required=False)
@click.option("--state", "states", type=click.Choice(["failed", "cancelled"]), multiple=True,
              help="Bulk: retry jobs in this state (default failed).")
@_filter_options
@click.option("--retries", type=click.IntRange(0, INT64_MAX - 1), default=0, show_default=True,
              help="Retries each gets after its new attempt.")
@_errors
def retry(config_path: str | None, database: str | None, job_id: int | None,
          states: tuple[str, ...], task: str | None, queue: str | None, since: str | None,
          yes: bool, retries: int) -> None:
    """Put a failed or cancelled job (JOB_ID), or every match of the filters, back to queued."""
    ctx = _Context(config_path, database)
    app = ctx.job_app()
    if job_id is None:
        now = time.time()
        _bulk(app, "retry", list(states or ["failed"]), task, queue, since, yes,
              lambda ids: app.store.retry_many(ids, retries, now))
        return
    job = _job_or_fail(app, job_id)
    if not app.store.retry(job_id, retries, time.time()):
        raise _fail(f"job {job_id} is {job.state.value}; only failed or cancelled jobs can be "
                    "retried")
    app.ring(b"e")
    click.echo(f"job {job_id} queued again")


@main.command()
@_common
@click.argument("job_id", type=_JOB_ID, required=False)
@click.option("--state", "states", type=click.Choice(["scheduled", "queued", "running"]),
              multiple=True, help="Bulk: cancel jobs in this state (default: all three).")
@_filter_options
@_errors
def cancel(config_path: str | None, database: str | None, job_id: int | None,
           states: tuple[str, ...], task: str | None, queue: str | None, since: str | None,
           yes: bool) -> None:
    """Cancel a job (JOB_ID), or every match of the filters: pending ones never run, running
    ones are stopped."""
    ctx = _Context(config_path, database)
    app = ctx.job_app()
    if job_id is None:
        if not (task or queue or since or states):
            raise _fail("give a JOB_ID, or filters (--state, --task, --queue, --since) for a "
                        "bulk cancel")
        now = time.time()
        _bulk(app, "cancel", list(states or ["scheduled", "queued", "running"]), task, queue,
              since, yes,
              lambda ids: app.store.cancel_many(ids, "cancelled", now))
        return
    job = _job_or_fail(app, job_id)
    if not job.cancel():
        raise _fail(f"job {job_id} already ended {job.state.value}; nothing to cancel")
    click.echo(f"job {job_id} cancelled")


@main.command()
@_common
@click.option("--state", "states", type=click.Choice(["succeeded", "failed", "cancelled"]),
              multiple=True, help="Delete jobs in this state (default: all three).")
@click.option("--older-than", "older_than", help="Only jobs created before: a duration ago "
              "(7d: older than a week) or an ISO-8601 time.")
@_filter_options
@_errors
def purge(config_path: str | None, database: str | None, states: tuple[str, ...],
          older_than: str | None, task: str | None, queue: str | None, since: str | None,
          yes: bool) -> None:
    """Delete finished jobs (and their attempts) matching the filters; ``--older-than 7d``
    deletes those created over a week ago (``--since 7d``: the ones of the last week)."""
    ctx = _Context(config_path, database)
    app = ctx.job_app()
    _bulk(app, "purge", list(states or ["succeeded", "failed", "cancelled"]), task, queue,
          since, yes, app.store.purge, older_than)


@main.command()
@_common
@click.argument("action", type=click.Choice(["list", "pause", "resume"]), default="list")
@click.argument("name", required=False)
@click.option("--create", is_flag=True,
              help="Pause or resume a queue no job or config has used yet.")
@_json_option
@_errors
def queues(config_path: str | None, database: str | None, action: str, name: str | None,
           create: bool, as_json: bool) -> None:
    """List queues with their limits and counts, or pause / resume one (persisted)."""
    ctx = _Context(config_path, database)
    app = ctx.job_app()
    if action != "list":
        if not name:
            raise _fail(f"name the queue: litejobs queues {action} NAME")
        check_name("queue", name)
        known = (set(app.store.stats()["queues"]) | {q for q, _ in app.store.queue_list()}
                 | set(ctx.config.queues) | {t.defaults.queue for t in app.tasks.values()})
        if name not in known and not create:
            raise _fail(f"no queue named {name!r} has been used (known: "
                        f"{', '.join(sorted(known)) or 'none'}); check the spelling, or pass "
                        f"--create to {action} it before its first job")
        app.store.set_paused(name, action == "pause")
        if action == "resume":
            app.ring(b"e")
        click.echo(f"queue {name} {'paused' if action == 'pause' else 'resumed'}")
        return
    counts = app.store.stats()["queues"]
    paused = dict(app.store.queue_list())
    items = []
    for q in sorted(set(counts) | set(paused) | set(ctx.config.queues)):
        limits = ctx.config.queues.get(q)
        items.append({"name": q, "paused": paused.get(q, False),
                      "concurrency": limits.concurrency if limits else None,
                      "rate_limit": limits.rate_limit if limits else None,
                      "counts": counts.get(q, {})})
    if as_json:
        click.echo(json.dumps(items))
        return
    for it in items:
        c = it["counts"]
        limits_text = ", ".join(f"{k}={it[k]}" for k in ("concurrency", "rate_limit") if it[k])
        click.echo(f"{it['name']:<20} {'PAUSED' if it['paused'] else 'active':<7} "
                   f"queued={c.get('queued', 0)} running={c.get('running', 0)} "
                   f"scheduled={c.get('scheduled', 0)} {limits_text}")


@main.command()
@_common
@click.argument("job_id", type=_JOB_ID)
@click.option("--app", "app_spec", help="Import path of the App (to check the task exists).")
@_json_option
@_errors
def explain(config_path: str | None, database: str | None, job_id: int,
            app_spec: str | None, as_json: bool) -> None:
    """Say in one sentence why a job is not running now."""
    from litejobs.explain import explain as explain_job

    ctx = _Context(config_path, database, app_spec)
    app = ctx.job_app()
    tasks = set(ctx.app().tasks) if ctx.config.app else None
    result = explain_job(app.store, job_id, ctx.config, tasks)
    if result is None:
        raise _fail(f"no job with id {job_id} (never enqueued, or pruned after retention)")
    click.echo(json.dumps(result.to_dict()) if as_json else result.message)


@main.command()
@_common
@_json_option
@_errors
def stats(config_path: str | None, database: str | None, as_json: bool) -> None:
    """Count jobs by state and queue."""
    ctx = _Context(config_path, database)
    data = ctx.store().stats()
    if as_json:
        click.echo(json.dumps(data))
        return
    states = list(data["states"])
    click.echo(f"{'QUEUE':<20}" + "".join(f"{s:>11}" for s in states))
    for name, counts in sorted(data["queues"].items()):
        click.echo(f"{_short(name, 20):<20}" + "".join(f"{counts[s]:>11}" for s in states))
    click.echo(f"{'(all)':<20}" + "".join(f"{data['states'][s]:>11}" for s in states))


@main.command()
@_common
@click.option("--allow-network-fs", is_flag=True,
              help="Only warn when the database is on a network file system.")
@_json_option
@_errors
def doctor(config_path: str | None, database: str | None, allow_network_fs: bool,
           as_json: bool) -> None:
    """Check the database file, its file system, disk, WAL, leases and supervisors."""
    from litejobs.doctor import diagnose

    ctx = _Context(config_path, database)
    checks = diagnose(ctx.database(), allow_network_fs=allow_network_fs)
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks]))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for c in checks:
            click.echo(f"{marks[c.verdict]} {c.name:<12} {c.message}")
    if any(c.verdict == "fail" for c in checks):
        sys.exit(1)


@main.group()
def cron() -> None:
    """Cron entries: list them, trigger one now, show upcoming fire times."""


def _entry(ctx: _Context, name: str) -> CronEntry:
    for entry in build_entries(ctx.app()):
        if entry.name == name:
            return entry
    names = ", ".join(sorted(ctx.app().cron_specs)) or "none"
    raise _fail(f"no cron entry named {name!r}; the app has: {names}")


@cron.command("list")
@_common
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@_json_option
@_errors
def cron_list(config_path: str | None, database: str | None, app_spec: str | None,
              as_json: bool) -> None:
    """Every cron entry: schedule, zone, policies, next fires, last fire and its job."""
    ctx = _Context(config_path, database, app_spec)
    entries = build_entries(ctx.app())
    path = ctx.database(check_app=True)
    stored = {r["name"]: r for r in Store(path, durability=ctx.config.durability).cron_entries()}
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = []
    for e in entries:
        row = stored.get(e.name, {})
        upcoming = list(itertools.islice(e.schedule.instants(now), 3))
        items.append({
            "name": e.name, "schedule": e.schedule.expression, "timezone": e.schedule.timezone,
            "task": e.task, "misfire": e.misfire, "catchup": e.catchup, "overlap": e.overlap,
            "next": [i.isoformat() for i in upcoming],
            "last_fire": iso(row.get("last_instant")),
            "last_job": row.get("last_job"), "last_job_state": row.get("last_state"),
        })
    if as_json:
        click.echo(json.dumps(items))
        return
    if not items:
        click.echo("no cron entries")
        return
    for it in items:
        click.echo(f"{it['name']}: {it['schedule']} ({it['timezone']}) → {it['task']}  "
                   f"misfire={it['misfire']} overlap={it['overlap']}")
        click.echo(f"    next: {', '.join(it['next']) or 'never'}")
        last = it["last_fire"] or "never"
        job = f" (job {it['last_job']}: {it['last_job_state']})" if it["last_job"] else ""
        click.echo(f"    last fire: {last}{job}")


@cron.command("trigger")
@_common
@click.argument("name")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@_json_option
@_errors
def cron_trigger(config_path: str | None, database: str | None, name: str,
                 app_spec: str | None, as_json: bool) -> None:
    """Enqueue a run of entry NAME now, outside its schedule; prints the job id."""
    ctx = _Context(config_path, database, app_spec)
    entry = _entry(ctx, name)
    ctx.database(check_app=True)
    app = ctx.app()
    job = app.enqueue(entry.task, list(entry.args), dict(entry.kwargs),
                      **{k: v for k, v in (("queue", entry.queue), ("priority", entry.priority))
                         if v is not None})
    click.echo(json.dumps(job.to_dict()) if as_json else str(job.id))


@cron.command("next")
@_common
@click.argument("name")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@click.option("--count", type=click.IntRange(1, 10000), default=5, show_default=True)
@click.option("--after", "after_text", help="ISO-8601 moment to start after (default: now).")
@_json_option
@_errors
def cron_next(config_path: str | None, database: str | None, name: str,
              app_spec: str | None, count: int, after_text: str | None, as_json: bool) -> None:
    """The next COUNT fire instants of entry NAME strictly after a moment, as UTC."""
    ctx = _Context(config_path, database, app_spec)
    entry = _entry(ctx, name)
    if after_text is None:
        after = datetime.now(UTC)
    else:
        try:
            after = datetime.fromisoformat(after_text.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"--after {after_text!r} is not ISO-8601; write e.g. "
                        "2026-03-29T00:30:00Z") from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
    instants = [i.astimezone(UTC).isoformat().replace("+00:00", "Z")
                for i in itertools.islice(entry.schedule.instants(after), count)]
    if as_json:
        click.echo(json.dumps(instants))
    else:
        for i in instants:
            click.echo(i)
