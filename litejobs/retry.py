"""The retry rule: after an attempt's error, retry (when) or fail for good. One place for it.

The worker knows the exception, so it asks ``retryable`` and ``delay`` of the task; the
supervisor knows the attempt counts, so ``retry_at`` decides from what the worker reported.
Errors only the supervisor sees (timeouts, a worker's death, a rescue) go through
``after_error``, which applies the same rule plus the crash limit. ``litejobs.testing`` uses
the same functions, so a test runs the rule a real worker runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litejobs.errors import JobTimeout

if TYPE_CHECKING:
    from litejobs.task import Backoff, Task

__all__ = ["Failure", "after_error", "delay", "retry_at", "retryable", "timeout_error"]

_default_backoff: Backoff | None = None


def retryable(task: Task[Any, Any] | None, error_type: type[BaseException]) -> bool:
    """Whether the task retries this kind of error (``retry_on``; any Exception by default)."""
    retry_on: tuple[type[BaseException], ...] = (
        (Exception,) if task is None else task.defaults.retry_on)
    return issubclass(error_type, retry_on)


def delay(task: Task[Any, Any] | None, counted: int,
          error: BaseException | None = None) -> float:
    """The back-off before retry number ``counted`` (1-based) of the task's jobs, after
    ``error`` when the worker saw it (see ``Backoff.delay_after``)."""
    global _default_backoff
    if task is not None:
        return task.defaults.backoff.delay_after(counted, error)
    if _default_backoff is None:
        from litejobs.task import Backoff

        _default_backoff = Backoff()
    return _default_backoff.delay(counted)


def retry_at(*, retry: bool, delay: float | None, attempt: int, interrupts: int,
             max_attempts: int, now: float) -> float | None:
    """When to run the job again after a failed attempt; None: it has failed for good.

    A job runs at most ``max_attempts`` counted times; attempts a drain interrupted do not
    count."""
    if not retry or attempt - interrupts >= max_attempts:
        return None
    return now + (delay or 0.0)


@dataclass(frozen=True, slots=True)
class Failure:
    """What to record for an attempt that ended in an error."""

    error: str
    retry_at: float | None  # None: the job is failed for good


def after_error(
    *,
    task: Task[Any, Any] | None,
    error: str,
    error_type: type[BaseException],
    attempt: int,
    interrupts: int,
    max_attempts: int,
    crashes: int,
    crash_limit: int,
    now: float,
    crashed: bool,
) -> Failure:
    """The retry rule for errors the supervisor sees (timeouts, deaths, rescues).

    A crash (``WorkerDied``) is retried at once rather than after a back-off, since the pool —
    not the job's input — is what failed, until the job has killed ``crash_limit`` workers.
    """
    if crashed and crashes + 1 >= crash_limit:
        return Failure(
            f"{error}; its worker died {crashes + 1} times (crash_limit={crash_limit}), so the "
            "job is failed instead of crash-looping the pool", None)
    wait = 0.0 if crashed else delay(task, attempt - interrupts)
    return Failure(error, retry_at(retry=retryable(task, error_type), delay=wait,
                                   attempt=attempt, interrupts=interrupts,
                                   max_attempts=max_attempts, now=now))


def timeout_error(attempt: int, timeout: float | None) -> tuple[str, type[BaseException]]:
    """The error of an attempt stopped for running past its timeout."""
    return (f"JobTimeout: attempt {attempt} ran past its timeout of {timeout:g} s and its worker "
            "was stopped", JobTimeout)
