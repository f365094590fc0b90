"""The bounds every value crossing into litejobs is checked against, in one place.

A value is refused where it comes in (a task's options, ``.options()``, ``app.enqueue``, a CLI
flag, a litejobs.toml key, a cron entry), with one line that names it and says what is allowed,
so that nothing stored can break a later read (``job.run_at``, ``jobs --json``, ``explain``) or
a later fire. The bounds:

* time: a delay, timeout, expiry, debounce, ``unique_for`` or config duration is at most
  ``MAX_SECONDS`` (100 years); a ``run_at`` lies between the epoch and the end of year 9999
  (the last moment a ``datetime`` can show);
* whole numbers fit SQLite's 64-bit INTEGER; priority is -100..100;
* numbers are finite (no NaN, no infinity);
* queue, task and key names are 1..``MAX_NAME`` characters without control characters;
* cron arguments are values JSON can carry (checked when the entry is built, not at its fire).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: A flow key as given: a string, or a function of the task's arguments returning one.
FlowKey = str | Callable[..., Any]

__all__ = [
    "INT64_MAX",
    "MAX_METADATA",
    "MAX_NAME",
    "MAX_PROGRESS_MESSAGE",
    "MAX_SECONDS",
    "MAX_TAG",
    "MAX_TAGS",
    "MAX_TIMESTAMP",
    "MAX_WORKERS",
    "UNLIMITED",
    "check_call_json",
    "check_flow_rate",
    "check_int",
    "check_metadata",
    "check_name",
    "check_priority",
    "check_progress",
    "check_retries",
    "check_seconds",
    "check_tags",
    "check_timestamp",
    "merge_flow_key",
    "parse_duration",
    "parse_rate",
    "parse_size",
]

INT64_MAX = 2**63 - 1
#: 100 years: the longest delay, timeout, expiry or duration accepted.
MAX_SECONDS = 100 * 365.25 * 86400
#: The end of year 9999 UTC: later instants cannot be shown as a datetime.
MAX_TIMESTAMP = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
MAX_NAME = 200
#: More worker processes than this is a typo (each is a Python process of ~20 MiB).
MAX_WORKERS = 1024
#: A job's tags: at most this many, each 1..MAX_TAG characters without control characters.
MAX_TAGS = 16
MAX_TAG = 64
#: The longest progress message, in characters.
MAX_PROGRESS_MESSAGE = 200
#: The largest metadata object of a job, as JSON text (UTF-8 bytes).
MAX_METADATA = 64 * 1024

#: The concurrency_limit stored for a flow key with a rate and no concurrency_limit: no cap.
UNLIMITED = INT64_MAX

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a usable queue/task/key name; ValueError naming ``kind`` otherwise."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise ValueError(f"{kind} must be a non-empty string of at most {MAX_NAME} characters, "
                         f"not {_show(value)}")
    if _CONTROL.search(value):
        raise ValueError(f"{kind} {_show(value)} contains control characters; use printable "
                         "text")
    return value


def check_tags(value: object) -> str | None:
    """A job's tags as a JSON array (duplicates dropped, order kept), None for no tags;
    ValueError naming the bad tag otherwise."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise ValueError(f"tags must be a list of strings, e.g. tags=['user:7'], not "
                         f"{_show(value)}")
    tags = list(dict.fromkeys(value))
    if len(tags) > MAX_TAGS:
        raise ValueError(f"a job has at most {MAX_TAGS} tags, not {len(tags)}; drop some")
    for tag in tags:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG or _CONTROL.search(tag):
            raise ValueError(f"tag {_show(tag)} is not usable: a tag is a string of 1 to "
                             f"{MAX_TAG} characters without control characters")
    return json.dumps(tags, ensure_ascii=False) if tags else None


def check_progress(fraction: object, message: object) -> tuple[float, str | None]:
    """``(fraction, message)`` if fraction is a finite number in 0..1 and message None or a
    string of at most MAX_PROGRESS_MESSAGE characters; ValueError/TypeError otherwise."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
            math.isfinite(fraction) and 0 <= fraction <= 1):
        raise ValueError(f"set_progress: fraction must be a number from 0 to 1 (0.4 for 40%), "
                         f"not {_show(fraction)}")
    if message is not None and (not isinstance(message, str)
                                or len(message) > MAX_PROGRESS_MESSAGE):
        raise ValueError(f"set_progress: message must be a string of at most "
                         f"{MAX_PROGRESS_MESSAGE} characters, not {_show(message)}")
    return float(fraction), message


def check_metadata(current: Mapping[str, object], values: Mapping[str, object]) -> str:
    """The JSON text of ``current`` merged with ``values``; ValueError when a value is not
    JSON or the whole passes MAX_METADATA bytes."""
    merged = {**current, **values}
    try:
        text = json.dumps(merged, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"set_metadata: values must be JSON (str, int, float, bool, None, "
                         f"lists and dicts of them): {exc}") from None
    if len(text.encode()) > MAX_METADATA:
        raise ValueError(f"set_metadata: the job's metadata would be {len(text.encode())} "
                         f"bytes of JSON, over the limit of {MAX_METADATA}; store less "
                         "(e.g. a path to a file instead of its content)")
    return text


def check_seconds(what: str, value: object, allow_zero: bool = True) -> float:
    """A finite number of seconds in [0, 100 years] (``> 0`` unless ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of seconds, not {_show(value)}")
    low = ">= 0" if allow_zero else "> 0"
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"{what} must be a finite number of seconds {low} and at most "
                         f"{MAX_SECONDS:.0f} (100 years), not {_show(value)}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{what} must be {low} seconds, not {_show(value)}")
    return seconds


def check_timestamp(what: str, value: object) -> float:
    """A UNIX time (seconds) between the epoch and the end of year 9999 UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 <= value <= MAX_TIMESTAMP):
        raise ValueError(f"{what} must be a time between 1970 and the end of year 9999 (UNIX "
                         f"seconds 0..{MAX_TIMESTAMP:.0f}, or an aware datetime), not "
                         f"{_show(value)}")
    return float(value)


def check_int(what: str, value: object, low: int = 0, high: int = INT64_MAX) -> int:
    """A whole number in [low, high] (default: SQLite's non-negative 64-bit range)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, not "
                         f"{_show(value)}")
    return value


def check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -100 <= value <= 100:
        raise ValueError(f"priority must be a whole number from -100 to 100 (higher runs "
                         f"first), not {_show(value)}")
    return value


def check_retries(value: object) -> int:
    # + 1 attempt must still fit SQLite's INTEGER
    return check_int("retries", value, 0, INT64_MAX - 1)


def check_call_json(args: object, kwargs: object) -> str | None:
    """Why ``args``/``kwargs`` cannot be stored as a call's JSON arguments, or None."""
    from litejobs.serialization import why_not_json

    if not isinstance(args, Sequence) or isinstance(args, str | bytes):
        return f"args must be a list, not {_show(args)}"
    if not isinstance(kwargs, Mapping):
        return f"kwargs must be a table, not {_show(kwargs)}"
    for i, value in enumerate(args):
        why = why_not_json(value)
        if why is not None:
            return f"args[{i}] = {_show(value)} cannot be stored as JSON: {why}"
    for name, value in kwargs.items():
        if not isinstance(name, str):
            return f"kwargs key {_show(name)} must be a string"
        why = why_not_json(value)
        if why is not None:
            return f"kwargs[{name!r}] = {_show(value)} cannot be stored as JSON: {why}"
    return None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZES = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from a number or a string like ``"90"``, ``"30s"``, ``"15m"``, ``"7d"``
    (at most 100 years)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of seconds or a string like '7d', not {value}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", value)
        if not m:
            raise ValueError(f"{what} {value!r} is not a duration; write e.g. 30, '30s', '15m', "
                             "'12h', '7d'")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{what} must be a number of seconds or a string like '7d'")
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, not {_show(value)}")
    if seconds < 0:
        raise ValueError(f"{what} must not be negative")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{what} {_show(value)} is more than 100 years; write at most "
                         f"{MAX_SECONDS:.0f} seconds")
    return seconds


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
        number = float(m.group(1)) * _SIZES[m.group(2).lower()]
        size = int(number) if math.isfinite(number) else INT64_MAX + 1
    else:
        raise ValueError(f"{what} must be a size like '512MB'")
    if size < 0:
        raise ValueError(f"{what} must not be negative")
    if size > INT64_MAX:
        raise ValueError(f"{what} {_show(value)} is too large; write at most {INT64_MAX} bytes")
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
    if count > INT64_MAX or not math.isfinite(period) or period > MAX_SECONDS:
        raise ValueError(f"rate_limit {value!r} is out of range; write at most {INT64_MAX} per "
                         "period of at most 100 years")
    return count, period


def check_flow_rate(value: object) -> tuple[int, float]:
    """A flow key's ``rate_limit`` ("N/s", "N/m", "N/h") as (N, seconds)."""
    if not isinstance(value, str):
        raise ValueError(f"rate_limit must be a string like '10/s', '100/m' or '1000/h', not "
                         f"{_show(value)}")
    return parse_rate(value)


def merge_flow_key(flow_key: FlowKey | None, concurrency_key: FlowKey | None,
                   where: str) -> FlowKey | None:
    """The one key of ``flow_key`` and ``concurrency_key`` (two names for the same column);
    ValueError when both are given and differ."""
    if flow_key is None:
        return concurrency_key
    if concurrency_key is not None and concurrency_key != flow_key:
        raise ValueError(f"{where}: flow_key {_show(flow_key)} and concurrency_key "
                         f"{_show(concurrency_key)} differ; they are one key (flow_key is "
                         "the general form), give only flow_key")
    return flow_key
