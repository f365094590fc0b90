"""Configuration: defaults < litejobs.toml < ``LITEJOBS_*`` environment < command-line flags.

Read with the standard library's ``tomllib``; ``litejobs init`` writes a commented file whose
values are rendered by ``tomli_w``. An invalid file is refused naming the file, the line, the
key and what is wrong.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from litejobs.errors import ConfigError

__all__ = [
    "Config",
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
    max_payload: int = MAX_PAYLOAD
    queues: Mapping[str, QueueConfig] = field(default_factory=dict)
    cron: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The file this came from (absolute), for messages and relative paths.
    source: str | None = None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZES = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from a number or a string like ``"90"``, ``"30s"``, ``"15m"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of seconds or a string like '7d', not {value}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", value)
        if not m:
            raise ValueError(f"{what} {value!r} is not a duration; write e.g. 30, '30s', '15m', "
                             "'12h', '7d'")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{what} must be a number of seconds or a string like '7d'")
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, not {value!r}")
    if seconds < 0:
        raise ValueError(f"{what} must not be negative")
    return seconds


def check_durability(value: str) -> str:
    """``value`` if it is a durability ("full" or "fast"); ValueError otherwise."""
    if value not in ("full", "fast"):
        raise ValueError(f"durability must be 'full' or 'fast', not {value!r}")
    return value


def database_path(path: str | os.PathLike[str]) -> str:
    """The absolute path of a database file; ValueError for what cannot be one."""
    raw = os.fspath(path)
    if raw in ("", ":memory:") or raw.startswith("file:"):
        raise ValueError(
            f"database must be a file path, not {raw!r}: workers in other processes share it")
    return os.path.abspath(raw)


def parse_size(value: object, what: str = "size") -> int:
    """Bytes from a number or a string like ``"512MB"`` (``"0"``: no limit)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a size like '512MB', not {value}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _SIZES:
            raise ValueError(f"{what} {value!r} is not a size; write e.g. '0', '512MB', '2GB'")
        size = int(float(m.group(1)) * _SIZES[m.group(2).lower()])
    else:
        raise ValueError(f"{what} must be a size like '512MB'")
    if size < 0:
        raise ValueError(f"{what} must not be negative")
    return size


def parse_rate(value: str) -> tuple[int, float]:
    """``"N/P"`` (P: s, m, h, or a number of seconds with a unit) → (N, seconds)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|m|h|d)\s*", value)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"rate_limit {value!r} is not a rate; write N/s, N/m or N/h, e.g. "
                         "'10/s'")
    count = int(m.group(1))
    period = float(m.group(2) or 1) * _UNITS[m.group(3)]
    if period <= 0:
        raise ValueError(f"rate_limit {value!r} has an empty period")
    return count, period


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
        return ConfigError(f"{where}: key '{full}': {problem}")

    def integer(self, table: str | None, key: str, value: object, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(table, key, f"must be a whole number >= {low}, not {value!r}")
        return value

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
             "queues", "cron"}
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
            if not isinstance(value, str) or not value:
                raise c.fail(None, key, "must be a non-empty string")
            if key == "app" and ":" not in value:
                raise c.fail(None, key, f"{value!r} must look like 'package.module:attribute'")
            if key == "database" and not os.path.isabs(value):
                value = os.path.join(os.path.dirname(path), value)
            out[key] = value
        elif key in ("workers", "crash_limit"):
            out[key] = c.integer(None, key, value, 1)
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
    return out


def _queues(c: _Checker, value: object) -> dict[str, QueueConfig]:
    if not isinstance(value, dict):
        raise c.fail(None, "queues", "must be a table of [queues.NAME] tables")
    out: dict[str, QueueConfig] = {}
    for name, table in value.items():
        where = f"queues.{name}"
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
        from litejobs.cron import entry_from_spec

        options = {k: v for k, v in table.items()
                   if k not in ("schedule", "task", "timezone", "args", "kwargs")}
        try:
            entry_from_spec(name, table["schedule"], table["task"],
                            table.get("timezone", "UTC"), table.get("args", []),
                            table.get("kwargs", {}), options, c.path)
        except ValueError as exc:
            raise c.fail(where, _cron_key(str(exc)), str(exc)) from None
        out[name] = dict(table)
    return out


def _cron_key(message: str) -> str:
    """The key of a cron table a validation message is about (for its line number)."""
    if "time zone" in message:
        return "timezone"
    for key in ("misfire", "overlap", "catchup", "priority", "queue"):
        if f"{key} must" in message:
            return key
    return "schedule"


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
                overrides[key] = int(value)
                if overrides[key] < 1:
                    raise ValueError
            elif key == "grace":
                overrides[key] = parse_duration(value, var)
            elif key == "durability" and value not in ("full", "fast"):
                raise ValueError
            elif key == "database":
                overrides[key] = os.path.abspath(value)
            else:
                overrides[key] = value
        except ValueError:
            raise ConfigError(f"environment variable {var}={value!r} is not valid for "
                              f"'{key}'; fix or unset it") from None
    for key, value in flags.items():
        if value is not None:
            if key == "database":
                value = os.path.abspath(value)
            overrides[key] = value
    return replace(config, **overrides)


_TEMPLATE: list[tuple[str, str, Any]] = [
    ("app", "import path of your litejobs.App", "myapp.jobs:app"),
    ("database", "the SQLite file, relative to this file", "litejobs.db"),
    ("workers", "worker processes `litejobs run` starts", 4),
    ("durability", '"full": a returned enqueue survives power loss; "fast": survives any '
     "process crash, not a power cut", "full"),
    ("retention", "terminal jobs older than this are pruned", "7d"),
    ("grace", "seconds running jobs get to finish on SIGTERM", 30),
    ("lease", "seconds a running job's lease lasts between renewals", 30),
    ("max_tasks_per_child", "recycle a worker after this many jobs (0: never)", 0),
    ("max_memory_per_child", 'recycle a worker whose RSS passes this, e.g. "512MB" ("0": never)',
     "0"),
    ("crash_limit", "a job whose worker died this many times is failed", 3),
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
