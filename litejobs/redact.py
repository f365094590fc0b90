"""Masking the arguments a task marks secret: ``@app.task(redact=["password", "card"])``.

The dashboard and the CLI (``litejobs show``, ``litejobs jobs``) show those arguments as
``•••``, whether the call passed them by keyword or by position. The stored job keeps them as
they are: the task needs them, and only the task's own registration says which ones are
secret, so a job whose task this process does not know is shown unmasked (and the dashboard
says so).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litejobs.app import App

__all__ = ["MASK", "check_redact", "mask", "mask_args", "masks"]

#: What a masked argument's value is replaced with.
MASK = "•••"


def check_redact(redact: Sequence[str] | None, fn: Callable[..., Any] | None = None,
                 ) -> tuple[str, ...]:
    """Validate ``redact=`` of ``@app.task``: a list of argument names (of ``fn``, when its
    signature is known and takes no ``**kwargs``). Raises TypeError or ValueError."""
    if redact is None:
        return ()
    if isinstance(redact, str | bytes) or not isinstance(redact, Sequence):
        raise TypeError(f"redact must be a list of argument names, e.g. redact=[{redact!r}], "
                        f"not {type(redact).__name__}")
    names: list[str] = []
    for name in redact:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"redact names arguments: {name!r} is not an argument name")
        if name not in names:
            names.append(name)
    if fn is not None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return tuple(names)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = [n for n in names if n not in params]
            if unknown:
                raise ValueError(
                    f"redact names {unknown[0]!r}, which is not an argument of "
                    f"{getattr(fn, '__qualname__', fn)!r}; its arguments: "
                    f"{', '.join(params) or 'none'}")
    return tuple(names)


def masks(app: App, task_name: str) -> tuple[str, ...] | None:
    """The argument names ``task_name`` masks; None when the task is not registered in this
    process (nothing can be masked then)."""
    task = app.tasks.get(task_name)
    return None if task is None else task.redact


def mask(app: App, task_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the values of the task's ``redact`` arguments replaced by ``•••``."""
    names = masks(app, task_name)
    if not names:
        return dict(kwargs)
    return {k: MASK if k in names else v for k, v in kwargs.items()}


def mask_args(app: App, task_name: str, args: Sequence[Any]) -> list[Any]:
    """Positional ``args`` with those that fill a ``redact`` argument replaced by ``•••``."""
    names = masks(app, task_name)
    if not names:
        return list(args)
    positions = app.tasks[task_name].param_names
    return [MASK if i < len(positions) and positions[i] in names else v
            for i, v in enumerate(args)]
