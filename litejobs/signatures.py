"""Arguments checked at enqueue: a call the task's function could never accept is refused
before anything is written, as a plain call of the function would refuse it.

The common call (positional arguments only, a count the function takes) is checked from a
shape computed once per function; anything else goes through ``inspect.Signature.bind``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.task import Prepared

__all__ = ["check_call", "check_prepared", "check_run"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Shape:
    """What a function accepts, precomputed: enough to pass a positional-only call fast."""

    __slots__ = ("max_positional", "min_positional", "signature")

    def __init__(self, signature: inspect.Signature) -> None:
        self.signature = signature
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in _POSITIONAL]
        varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        required_kw = any(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty
                          for p in params)
        self.max_positional = 1 << 62 if varargs else len(positional)
        required = sum(1 for p in positional if p.default is p.empty)
        # a required keyword-only parameter: no positional-only call can pass the fast check
        self.min_positional = 1 << 62 if required_kw else required


#: Per function (by identity; a task's function lives as long as its app does).
_shapes: dict[Callable[..., Any], _Shape | None] = {}


def _shape_of(fn: Callable[..., Any]) -> _Shape | None:
    try:
        return _shapes[fn]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable: check it every time
        return _compute(fn)
    shape = _shapes[fn] = _compute(fn)
    return shape


def _compute(fn: Callable[..., Any]) -> _Shape | None:
    try:
        return _Shape(inspect.signature(fn))
    except (TypeError, ValueError):  # a builtin without a signature: a worker will tell
        return None


def check_call(task: str, fn: Callable[..., Any], args: Sequence[Any],
               kwargs: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming the task when ``fn(*args, **kwargs)`` could never bind."""
    shape = _shape_of(fn)
    if shape is None:
        return
    n = len(args)
    if not kwargs and shape.min_positional <= n <= shape.max_positional:
        return
    _refuse(task, shape, args, kwargs)


def _refuse(task: str, shape: _Shape, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    if any(type(name) is not str for name in kwargs):
        return  # dump_call names the keyword (a plain call could not even be written)
    n = len(args)
    if n > shape.max_positional:
        given = "was" if n == 1 else "were"
        raise TypeError(f"task {task!r} takes {shape.max_positional} positional argument"
                        f"{'' if shape.max_positional == 1 else 's'} but {n} {given} given; "
                        "nothing was enqueued")
    try:
        shape.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"task {task!r}: {exc} (its signature: {shape.signature}); nothing "
                        "was enqueued") from None


def check_prepared(p: Prepared, app: App | None = None) -> None:
    """Check a prepared call of a task registered in ``p.app`` (or ``app``); a call by the
    name of a task this process has not registered is not checked (a producer need not
    import task code)."""
    owner = p.app if p.app is not None else app
    if owner is None:
        return
    task = owner.tasks.get(p.task)
    if task is None or task.defaults is not p.defaults:
        return
    try:
        shape = _shapes[task.fn]
    except (KeyError, TypeError):
        check_call(p.task, task.fn, p.args, p.kwargs)
        return
    if shape is not None and (p.kwargs or not
                              shape.min_positional <= len(p.args) <= shape.max_positional):
        _refuse(p.task, shape, p.args, p.kwargs)


def check_run(run: Sequence[Prepared]) -> None:
    """Check a run of calls of one task (one ``defaults``), as ``enqueue_many`` batches
    them: the task's shape is looked up once, each call's count checked against it."""
    p = run[0]
    if p.app is None:
        return
    task = p.app.tasks.get(p.task)
    if task is None or task.defaults is not p.defaults:
        return
    shape = _shape_of(task.fn)
    if shape is None:
        return
    lo, hi = shape.min_positional, shape.max_positional
    for q in run:
        if q.kwargs or not lo <= len(q.args) <= hi:
            _refuse(q.task, shape, q.args, q.kwargs)
