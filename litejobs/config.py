"""Configuration: defaults < litejobs.toml < ``LITEJOBS_*`` environment < command-line flags.

Read with the standard library's ``tomllib``; ``litejobs init`` writes a commented file whose
values are rendered by ``tomli_w``. An invalid file is refused naming the file, the line, the
key and what is wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from litejobs.errors import ConfigError
from litejobs.httpconfig import HttpConfig, parse_http
from litejobs.validate import (
    INT64_MAX,
    MAX_WORKERS,
    check_int,
    check_name,
    check_seconds,
    parse_duration,
    parse_rate,
    parse_size,
)

__all__ = [
    "Config",
    "HttpConfig",
    "QueueConfig",
    "check_durability",
    "database_path",
    "load_config",
    "parse_duration",
    "parse_rate",
    "parse_size",
    "render_template",
]

DEFAULT_FILE = "litejobs.toml"
MAX_PAYLOAD = 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One ``[queues.NAME]`` table."""

    concurrency: int | None = None
    rate_limit: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a supervisor and the CLI need; immutable, passed in, never global."""

    app: str | None = None
    database: str | None = None
    workers: int = 2
    durability: str = "full"
    retention: float = 7 * 86400.0
    grace: float = 30.0
    lease: float = 30.0
    max_tasks_per_child: int = 0
    max_memory_per_child: int = 0
    crash_limit: int = 3
    #: ``async def`` jobs a worker runs at once on its event loop.
    async_concurrency: int = 16
    max_payload: int = MAX_PAYLOAD
    queues: Mapping[str, QueueConfig] = field(default_factory=dict)
    cron: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    http: HttpConfig = field(default_factory=HttpConfig)
    #: The file this came from (absolute), for messages and relative paths.
    source: str | None = None


def check_durability(value: str) -> str:
    """``value`` if it is a durability ("full" or "fast"); ValueError otherwise."""
    if value not in ("full", "fast"):
        raise ValueError(f"durability must be 'full' or 'fast', not {value!r}")
    return value


def is_postgres_url(value: str) -> bool:
    """Whether ``value`` names a PostgreSQL database rather than a file."""
    return value.startswith(("postgresql://", "postgres://"))


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages (cheap: no store is imported)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def database_path(path: str | os.PathLike[str]) -> str:
    """The absolute path of a database file, or a PostgreSQL URL as given (never a path: a
    supervisor and an App given one URL must name one database); ValueError for what cannot
    be either."""
    raw = os.fspath(path)
    if is_postgres_url(raw):
        return raw
    if raw in ("", ":memory:") or raw.startswith("file:"):
        raise ValueError(
            f"database must be a file path, not {raw!r}: workers in other processes share it")
    return os.path.abspath(raw)


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """The line where ``key`` is set inside ``[table]`` (None: top level), for messages."""
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\]]+?)\s*\]\s*(#.*)?", stripped)
        if header:
            current = header.group(1).replace('"', "").replace("'", "")
            continue
        if current == table and re.match(rf"""["']?{re.escape(key)}["']?\s*=""", stripped):
            return number
    if table is not None:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip().startswith("[") and table in line:
                return number
    return None


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, table: str | None, key: str, problem: str) -> ConfigError:
        line = _line_of(self.text, table, key)
        where = f"{self.path}:{line}" if line else self.path
        full = f"{table}.{key}" if table else key
        if not full.isprintable():  # a control character would split the one-line message
            full = full.encode("unicode_escape").decode("ascii")
        return ConfigError(f"{where}: key '{full}': {problem}")

    def integer(self, table: str | None, key: str, value: object, low: int,
                high: int = INT64_MAX) -> int:
        try:
            return check_int(key, value, low, high)
        except ValueError as exc:
            raise self.fail(table, key, str(exc)) from None

    def name(self, table: str | None, key: str, kind: str, value: object) -> str:
        try:
            return check_name(kind, value)
        except ValueError as exc:
            raise self.fail(table, key, str(exc)) from None

    def number(self, table: str | None, key: str, value: object, positive: bool = True) -> float:
        try:
            seconds = parse_duration(value, key)
        except ValueError as exc:
            raise self.fail(table, key, str(exc)) from None
        if positive and seconds <= 0:
            raise self.fail(table, key, "must be more than 0")
        return seconds


_TOP_KEYS = {"app", "database", "workers", "durability", "retention", "grace", "lease",
             "max_tasks_per_child", "max_memory_per_child", "crash_limit", "max_payload",
             "queues", "cron", "http", "async_concurrency"}
_QUEUE_KEYS = {"concurrency", "rate_limit"}
CRON_KEYS = {"schedule", "task", "timezone", "args", "kwargs", "misfire", "catchup", "overlap",
             "queue", "priority"}


def _from_mapping(data: Mapping[str, Any], path: str, text: str) -> dict[str, Any]:
    c = _Checker(path, text)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _TOP_KEYS:
            raise c.fail(None, key, f"unknown key; known keys: {', '.join(sorted(_TOP_KEYS))}")
        if key in ("app", "database"):
            if not isinstance(value, str) or not value or "\0" in value:
                raise c.fail(None, key, "must be a non-empty string (without NUL)")
            if key == "app" and ":" not in value:
                raise c.fail(None, key, f"{value!r} must look like 'package.module:attribute'")
            if key == "database" and not (os.path.isabs(value) or is_postgres_url(value)):
                value = os.path.join(os.path.dirname(path), value)
            out[key] = value
        elif key == "workers":
            out[key] = c.integer(None, key, value, 1, MAX_WORKERS)
        elif key == "crash_limit":
            out[key] = c.integer(None, key, value, 1)
        elif key == "async_concurrency":
            out[key] = c.integer(None, key, value, 1, 10_000)
        elif key == "max_tasks_per_child":
            out[key] = c.integer(None, key, value, 0)
        elif key == "durability":
            if value not in ("full", "fast"):
                raise c.fail(None, key, f"must be 'full' or 'fast', not {value!r}")
            out[key] = value
        elif key in ("retention", "grace", "lease"):
            out[key] = c.number(None, key, value, positive=key != "grace")
        elif key in ("max_memory_per_child", "max_payload"):
            try:
                out[key] = parse_size(value, key)
            except ValueError as exc:
                raise c.fail(None, key, str(exc)) from None
        elif key == "queues":
            out[key] = _queues(c, value)
        elif key == "cron":
            out[key] = _cron(c, value)
        elif key == "http":
            out[key] = parse_http(c, value)
    return out


def _queues(c: _Checker, value: object) -> dict[str, QueueConfig]:
    if not isinstance(value, dict):
        raise c.fail(None, "queues", "must be a table of [queues.NAME] tables")
    out: dict[str, QueueConfig] = {}
    for name, table in value.items():
        where = f"queues.{name}"
        c.name(None, where, "queue name", name)
        if not isinstance(table, dict):
            raise c.fail(None, where, "must be a table")
        for key in table:
            if key not in _QUEUE_KEYS:
                raise c.fail(where, key, f"unknown key; known: {', '.join(sorted(_QUEUE_KEYS))}")
        concurrency = table.get("concurrency")
        if concurrency is not None:
            concurrency = c.integer(where, "concurrency", concurrency, 1)
        rate = table.get("rate_limit")
        if rate is not None:
            if not isinstance(rate, str):
                raise c.fail(where, "rate_limit", "must be a string like '10/s'")
            try:
                parse_rate(rate)
            except ValueError as exc:
                raise c.fail(where, "rate_limit", str(exc)) from None
        out[name] = QueueConfig(concurrency, rate)
    return out


def _cron(c: _Checker, value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise c.fail(None, "cron", "must be a table of [cron.NAME] tables")
    out: dict[str, dict[str, Any]] = {}
    for name, table in value.items():
        where = f"cron.{name}"
        c.name(None, where, "cron entry name", name)
        if not isinstance(table, dict):
            raise c.fail(None, where, "must be a table")
        for key in table:
            if key not in CRON_KEYS:
                raise c.fail(where, key, f"unknown key; known: {', '.join(sorted(CRON_KEYS))}")
        for required in ("schedule", "task"):
            if not isinstance(table.get(required), str):
                raise c.fail(where, required, "is required and must be a string")
        if not isinstance(table.get("timezone", "UTC"), str):
            raise c.fail(where, "timezone", "must be a string such as 'Europe/Berlin'")
        if not isinstance(table.get("args", []), list):
            raise c.fail(where, "args", "must be an array, e.g. args = [1, \"x\"]")
        if not isinstance(table.get("kwargs", {}), dict):
            raise c.fail(where, "kwargs", "must be a table, e.g. kwargs = { to = \"a@b.c\" }")
        from litejobs.cron import CronEntryError, entry_from_spec

        options = {k: v for k, v in table.items()
                   if k not in ("schedule", "task", "timezone", "args", "kwargs")}
        try:
            entry_from_spec(name, table["schedule"], table["task"],
                            table.get("timezone", "UTC"), table.get("args", []),
                            table.get("kwargs", {}), options, c.path)
        except CronEntryError as exc:
            raise c.fail(where, exc.key, str(exc)) from None
        out[name] = dict(table)
    return out


def read_file(path: str) -> Config:
    """Load one litejobs.toml (no environment, no flags)."""
    path = os.path.abspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; create one with `litejobs init`") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    import tomllib  # here, not at the top: workers import litejobs but never read a file

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (before 3.14) only puts the position in its message; name the line's text
        # too, so the key at fault is in the message.
        at = re.search(r"at line (\d+)", str(exc))
        lines = text.splitlines()
        if at and 0 < int(at.group(1)) <= len(lines):
            raise ConfigError(f"{path}:{at.group(1)}: not valid TOML: {exc}: "
                              f"{lines[int(at.group(1)) - 1].strip()!r}") from None
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return replace(Config(), source=path, **_from_mapping(data, path, text))


_ENV = {"LITEJOBS_DATABASE": "database", "LITEJOBS_APP": "app", "LITEJOBS_WORKERS": "workers",
        "LITEJOBS_GRACE": "grace", "LITEJOBS_DURABILITY": "durability"}


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> Config:
    """The effective config: ``path`` (or ./litejobs.toml if present, or
    ``LITEJOBS_CONFIG``), then the environment, then ``flags`` that are not None."""
    env = os.environ if env is None else env
    path = path or env.get("LITEJOBS_CONFIG")
    if path is None and os.path.exists(DEFAULT_FILE):
        path = DEFAULT_FILE
    config = read_file(path) if path else Config()
    overrides: dict[str, Any] = {}
    for var, key in _ENV.items():
        value = env.get(var)
        if value is None or value == "":
            continue
        try:
            if key == "workers":
                overrides[key] = check_int(var, int(value), 1, MAX_WORKERS)
            elif key == "grace":
                overrides[key] = parse_duration(value, var)
            elif key == "durability" and value not in ("full", "fast"):
                raise ValueError
            elif key == "database":
                overrides[key] = value if is_postgres_url(value) else os.path.abspath(value)
            else:
                overrides[key] = value
        except ValueError as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise ConfigError(f"environment variable {var}={value!r} is not valid for "
                              f"'{key}'{detail}; fix or unset it") from None
    secret = env.get("LITEJOBS_SIGNING_SECRET")
    if secret:  # the environment wins over [http] signing_secret, as for every setting
        overrides["http"] = replace(config.http, signing_secret=secret)
    for key, flag in flags.items():
        if flag is not None:
            if key == "database":
                if not is_postgres_url(flag):
                    flag = os.path.abspath(flag)
            elif key == "workers":
                flag = check_int("--workers", flag, 1, MAX_WORKERS)
            elif key == "grace":
                flag = check_seconds("--grace", flag)
            overrides[key] = flag
    return replace(config, **overrides)


_TEMPLATE: list[tuple[str, str, Any]] = [
    ("app", "import path of your litejobs.App", "myapp.jobs:app"),
    ("database", "the SQLite file, relative to this file", "litejobs.db"),
    ("workers", "worker processes `litejobs run` starts (default 2)", 2),
    ("durability", '"full": a returned enqueue survives power loss; "fast": survives any '
     "process crash, not a power cut", "full"),
    ("retention", "terminal jobs older than this are pruned", "7d"),
    ("grace", "seconds running jobs get to finish on SIGTERM", 30),
    ("lease", "seconds a running job's lease lasts between renewals", 30),
    ("max_tasks_per_child", "recycle a worker after this many jobs (0: never)", 0),
    ("max_memory_per_child", 'recycle a worker whose RSS passes this, e.g. "512MB" ("0": never)',
     "0"),
    ("crash_limit", "a job whose worker died this many times is failed", 3),
    ("async_concurrency", "async def jobs a worker runs at once", 16),
]


def render_template(app: str | None = None, database: str | None = None) -> str:
    """The commented litejobs.toml that ``litejobs init`` writes."""
    import tomli_w  # only `litejobs init` writes a file

    lines = ["# litejobs configuration. Flags > LITEJOBS_* environment > this file > defaults.",
             ""]
    for key, comment, default in _TEMPLATE:
        value = {"app": app, "database": database}.get(key) or default
        rendered = tomli_w.dumps({key: value}).strip()
        lines.append(f"{rendered:<32}# {comment}")
    lines += [
        "",
        "[queues.default]",
        f"{tomli_w.dumps({'concurrency': 4}).strip():<32}# at most this many of its jobs run "
        "at once",
        "",
        "# [queues.mail]",
        "# concurrency = 2",
        '# rate_limit = "10/s"            # N per s | m | h',
        "",
        "# [cron.daily_report]",
        '# schedule = "0 7 * * *"         # 5 fields, or 6 with seconds last',
        '# task = "myapp.jobs.daily_report"',
        '# timezone = "Europe/Berlin"     # default UTC',
        '# misfire = "latest"             # or "skip", "all"',
        "# catchup = 3600                 # seconds",
        '# overlap = "skip"               # or "allow", "queue"',
        "",
    ]
    return "\n".join(lines)
