"""JSON in and out of the database, with errors that name the task and the argument.

Only JSON is ever stored: nothing is pickled, so a row can never run code when it is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PayloadTooLarge", "dump_call", "dump_result", "load"]

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class PayloadTooLarge(ValueError):
    """The encoded arguments of a call are larger than the configured cap."""


def _dump(value: Any) -> str:
    return _encoder.encode(value)


def _why(value: Any) -> str | None:
    try:
        _dump(value)
    except (TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            return "it is nested too deeply"
        return str(exc)
    return None


def dump_call(
    task: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    max_payload: int,
    names: Sequence[str] = (),
) -> tuple[str, str]:
    """Encode a call's arguments, or raise ``TypeError`` naming the argument JSON cannot carry.

    ``names`` are the function's positional parameter names, used to name a bad positional
    argument the way the caller wrote it.
    """
    try:
        a = _dump(list(args))
        k = _dump(dict(kwargs))
    except (TypeError, ValueError, RecursionError):
        for i, value in enumerate(args):
            why = _why(value)
            if why is not None:
                label = f"argument {names[i]!r} (position {i})" if i < len(names) else (
                    f"positional argument {i}"
                )
                raise TypeError(
                    f"task {task!r}: {label} cannot be stored as JSON: {why}. Pass "
                    "JSON values (str, int, float, bool, None, list, dict with str keys); "
                    "nothing was enqueued"
                ) from None
        for name, value in kwargs.items():
            if not isinstance(name, str):
                raise TypeError(f"task {task!r}: keyword names must be str, got {name!r}") from None
            why = _why(value)
            if why is not None:
                raise TypeError(
                    f"task {task!r}: argument {name!r} cannot be stored as JSON: {why}. Pass "
                    "JSON values (str, int, float, bool, None, list, dict with str keys); "
                    "nothing was enqueued"
                ) from None
        raise
    size = len(a.encode()) + len(k.encode())
    if size > max_payload:
        raise PayloadTooLarge(
            f"task {task!r}: arguments take {size} bytes as JSON, over the cap of "
            f"{max_payload} bytes; store large data elsewhere (a file, a table) and pass its "
            "name, or raise max_payload; nothing was enqueued"
        )
    return a, k


def dump_result(value: Any) -> str:
    """Encode a task's return value; raises TypeError when JSON cannot carry it."""
    try:
        return _dump(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"the task returned a value JSON cannot carry ({exc}); return JSON values only"
        ) from None


def load(text: str | None) -> Any:
    """Decode stored JSON (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)
