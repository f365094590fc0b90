"""JSON in and out of the database, with errors that name the task and the argument.

Only JSON is ever stored: nothing is pickled, so a row can never run code when it is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PayloadTooLarge", "dump_batch", "dump_call", "dump_result", "encode", "load",
           "non_str_key", "why_not_json"]

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class PayloadTooLarge(ValueError):
    """The encoded arguments of a call are larger than the configured cap."""


#: Deepest nesting of lists and objects a stored value may have. Python's encoder and decoder
#: stop only at the recursion limit, which depends on the caller's stack: without a fixed cap a
#: value enqueued from a shallow stack could fail to decode in a worker (or be accepted from one
#: caller and refused from another).
MAX_DEPTH = 200


def _too_deep(value: Any, limit: int) -> bool:
    # Only called on values the encoder accepted, so there are no cycles to guard against.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _dump(value: Any, limit: int = MAX_DEPTH) -> str:
    text = _encoder.encode(value)
    # Nesting needs at least as many brackets; counting them in C keeps the common case fast.
    if text.count("[") + text.count("{") > limit and _too_deep(value, limit):
        raise RecursionError(f"nested more than {MAX_DEPTH} levels deep")
    return text


def non_str_key(value: Any) -> tuple[str, Any] | None:
    """The first dict key in ``value`` that is not a string, with its path (``['a'][2]``):
    JSON would quietly turn it into one (1 becomes "1"), so the task would get another value
    than the one enqueued. None: every key is a string."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return path, key
                if isinstance(child, dict | list | tuple):
                    stack.append((child, f"{path}[{key!r}]"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item)
                         if isinstance(child, dict | list | tuple))
    return None


def _refuse_keys(task: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                 names: Sequence[str]) -> None:
    found: list[tuple[str, tuple[str, Any]]] = []
    for i, value in enumerate(args):
        bad = non_str_key(value)
        if bad is not None:
            found.append((names[i] if i < len(names) else f"positional argument {i}", bad))
            break
    else:
        for name, value in kwargs.items():
            bad = non_str_key(value)
            if bad is not None:
                found.append((name, bad))
                break
    if found:
        name, (path, key) = found[0]
        raise TypeError(
            f"task {task!r}: argument {name!r} has a dict key that is not a string: "
            f"{key!r} ({type(key).__name__}) in {name}{path}; JSON would turn it into a "
            "string, so the task would get another value. Use str keys; nothing was "
            "enqueued")


def encode(value: Any) -> str:
    """Compact JSON as litejobs stores it (for a value already known to be valid)."""
    return _encoder.encode(value)


def why_not_json(value: Any) -> str | None:
    """Why JSON as litejobs stores it cannot carry ``value`` (None: it can)."""
    try:
        _dump(value).encode()  # a lone surrogate ("\udcff" from a file name) is not UTF-8
    except (TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            return f"it is nested more than {MAX_DEPTH} levels deep"
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
    for name in kwargs:
        # JSON would quietly turn 1 into "1"; the call could then never be made as written
        if not isinstance(name, str):
            raise TypeError(f"task {task!r}: keyword names must be str, got {name!r}; "
                            "nothing was enqueued")
    try:
        # +1: the list or object holding the arguments; each argument gets MAX_DEPTH levels.
        a = _dump(list(args), MAX_DEPTH + 1)
        k = _dump(dict(kwargs), MAX_DEPTH + 1) if kwargs else "{}"
        # UnicodeEncodeError (a lone surrogate) is a ValueError
        size = (len(a) if a.isascii() else len(a.encode())) + len(k.encode())
    except (TypeError, ValueError, RecursionError):
        for i, value in enumerate(args):
            why = why_not_json(value)
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
            why = why_not_json(value)
            if why is not None:
                raise TypeError(
                    f"task {task!r}: argument {name!r} cannot be stored as JSON: {why}. Pass "
                    "JSON values (str, int, float, bool, None, list, dict with str keys); "
                    "nothing was enqueued"
                ) from None
        raise
    # Only values holding an object can hide a non-string key (a "{" inside a string only
    # costs a walk that finds nothing).
    if "{" in a or k.count("{") > 1:
        _refuse_keys(task, args, kwargs, names)
    if size > max_payload:
        raise PayloadTooLarge(
            f"task {task!r}: arguments take {size} bytes as JSON, over the cap of "
            f"{max_payload} bytes; store large data elsewhere (a file, a table) and pass its "
            "name, or raise max_payload; nothing was enqueued"
        )
    return a, k


def dump_batch(
    args: Sequence[Sequence[Any]], kwargs: Sequence[Mapping[str, Any]] | None, max_payload: int
) -> str | None:
    """Many calls' arguments as one JSON array (of argument lists, or of ``[args, kwargs]``
    pairs when ``kwargs`` is given), for a bulk insert that splits it inside SQLite.

    Returns None when any call might be refused — not JSON, too deep, too large, a
    non-string keyword — so the caller encodes the calls one by one and gets the exact
    error; a batch this accepts holds only calls ``dump_call`` accepts.
    """
    if kwargs is not None:
        for names in kwargs:
            for name in names:
                if type(name) is not str:
                    return None
        value: list[Any] = list(zip(args, kwargs, strict=True))
        frame = 3  # brackets each call has without any nesting of its own: [ [ {
    else:
        value = list(args)
        frame = 1
    try:
        text = _encoder.encode(value)
        size = len(text) if text.isascii() else len(text.encode())
    except (TypeError, ValueError):
        return None
    # Every call's arguments are shorter than the whole, so a whole within the cap is enough;
    # else let dump_call measure each one.
    if size > max_payload:
        return None
    # Brackets beyond each call's own frame bound the deepest call's nesting (a "[" inside a
    # string counts too, which only sends an innocent batch the slow way).
    extra = text.count("[") + text.count("{") - 1 - frame * len(value)
    if extra >= MAX_DEPTH:
        return None
    objects = text.count("{") - (len(value) if kwargs is not None else 0)
    if objects and non_str_key(value) is not None:
        return None  # dump_call names the key
    return text


def dump_result(value: Any) -> str:
    """Encode a task's return value; raises TypeError when JSON cannot carry it."""
    try:
        text = _dump(value)
        text.encode()
        return text
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"the task returned a value JSON cannot carry ({exc}); return JSON values only"
        ) from None


def load(text: str | None) -> Any:
    """Decode stored JSON (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)
