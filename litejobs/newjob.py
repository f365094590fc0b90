"""A job about to be inserted: what the App validated and encoded, handed to the store.

Kept apart from the store so an app's module (imported by every worker) does not load SQLite
to build them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["NewJob", "NewJobs"]


@dataclass(slots=True)  # not frozen: a frozen init costs a setattr call per field, per enqueue
class NewJob:
    """One job to insert, already validated and encoded (treat it as a value)."""

    task: str
    queue: str
    priority: int
    args: str
    kwargs: str
    run_at: float
    max_attempts: int
    timeout: float | None
    key: str | None = None
    expires_at: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    #: The idempotency window: a live job of the same task and key younger than this is
    #: returned instead of a new one.
    unique_for: float | None = None
    #: With a key: push a pending job of that key back to now + debounce, newest arguments.
    debounce: float | None = None
    #: Its tags as a JSON array (validated), or None for none.
    tags: str | None = None
    #: The W3C traceparent of the span that enqueued it (``litejobs.tracing``), or None.
    trace: str | None = None
    #: Its flow key's rate: at most ``flow_rate`` starts of the key in any ``flow_period``
    #: seconds (both None: no rate).
    flow_rate: int | None = None
    flow_period: float | None = None


@dataclass(frozen=True, slots=True)
class NewJobs:
    """Many keyless calls of one task with nothing but their arguments of their own: inserted
    by one statement that splits ``payload`` inside SQLite (a row per call in Python cost more
    than the insert itself)."""

    #: Everything but the arguments (its own args/kwargs are ignored).
    template: NewJob
    #: A JSON array: one argument list per call, or ``[args, kwargs]`` pairs with kwargs.
    payload: str
    args: Sequence[Sequence[Any]]
    #: Each call's keyword arguments; None when no call has any.
    kwargs: Sequence[Mapping[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.args)
