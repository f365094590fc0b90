"""A litejobs job as Django's ``TaskResult``.

| job state                    | TaskResult.status |
|------------------------------|-------------------|
| scheduled, queued, waiting   | READY             |
| running                      | RUNNING           |
| succeeded                    | SUCCESSFUL        |
| failed, cancelled            | FAILED            |

``id`` is the job id as text; ``worker_ids`` has one entry per attempt (the worker that ran
it, ``leased_by``); ``errors`` one ``TaskError`` per failed attempt, and one for the
cancellation of a cancelled job; ``enqueued_at`` is when the job was made, ``started_at``
when its first attempt began, ``last_attempted_at`` when its latest began, ``finished_at``
when it ended (None until then).
"""

from __future__ import annotations

import builtins
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from litejobs.job import Attempt, Job, State, to_datetime

if TYPE_CHECKING:
    from litejobs.contrib.django.bridge import Bridge

__all__ = ["STATUS", "error_of", "find_result", "running_result", "to_result"]

STATUS = {
    State.WAITING: "READY", State.SCHEDULED: "READY", State.QUEUED: "READY",
    State.RUNNING: "RUNNING", State.SUCCEEDED: "SUCCESSFUL",
    State.FAILED: "FAILED", State.CANCELLED: "FAILED",
}

#: Errors the supervisor records for an attempt it ended (no traceback: the task did not
#: raise them), by the name their text starts with.
_SUPERVISOR_ERRORS = {"WorkerDied": "litejobs.errors.WorkerDied",
                      "JobTimeout": "litejobs.errors.JobTimeout"}


def error_of(attempt: Attempt) -> Any:
    """The ``TaskError`` of a failed attempt. Its exception's module is read from the
    traceback's last line (``module.Class: message``; built-in exceptions have none), its
    class from the error text the worker recorded (``Class: message``)."""
    from django.tasks.base import TaskError

    text = attempt.error or ""
    qualname = text.split(":", 1)[0].strip()
    tb = attempt.traceback or ""
    path = _SUPERVISOR_ERRORS.get(qualname) if not tb else None
    if path is None:
        path = f"builtins.{qualname}" if hasattr(builtins, qualname) else qualname
        for line in reversed(tb.splitlines()):
            head = line.split(":", 1)[0]
            if head == qualname or head.endswith("." + qualname):
                if head != qualname:
                    path = head
                break
    return TaskError(exception_class_path=path, traceback=tb or text)


def _task_for(bridge: Bridge, job: Job) -> Any:
    """The Django task the job is a call of, with the queue, priority, run_after and
    litejobs options the job was enqueued with."""
    from django.tasks.exceptions import TaskResultDoesNotExist

    base = bridge.django_tasks.get(job.task)
    if base is None:  # a plain litejobs job, or a task this process has not imported
        raise TaskResultDoesNotExist(
            f"job {job.id} is a call of {job.task!r}, which is not a Django task of this "
            "process (its tasks module is not imported here)")
    row = job.to_dict()
    deferred = job.run_at > job.created_at and job.attempt == 0
    changes: dict[str, Any] = {"priority": job.priority, "queue_name": job.queue,
                               "run_after": job.run_at if deferred else None}
    if hasattr(base, "retries"):  # a LitejobsTask: what litejobs stored of its options
        stored = {"retries": int(row["max_attempts"]) - 1, "timeout": row["timeout"],
                  "key": job.key, "tags": tuple(job.tags)}
        had = {"retries": bridge.retries if base.retries is None else base.retries,
               "timeout": base.timeout, "key": base.key, "tags": tuple(base.tags)}
        changes.update({k: v for k, v in stored.items() if v != had[k]})
    return replace(base, **changes)


def to_result(bridge: Bridge, job: Job, attempts: list[Attempt] | None = None,
              task: Any = None) -> Any:
    """The job as a ``TaskResult`` (``attempts``: its attempts, read if not given)."""
    from django.tasks.base import TaskError, TaskResult, TaskResultStatus

    if attempts is None:
        attempts = job.attempts() if job.attempt else []
    state = job.state
    errors = [error_of(a) for a in attempts if a.outcome == "failed"]
    if state is State.CANCELLED:
        errors.append(TaskError(exception_class_path="litejobs.errors.JobCancelled",
                                traceback=f"JobCancelled: {job.error or 'cancelled'}\n"))
    row = job.to_dict()
    finished = row["finished_at"] if state in (State.SUCCEEDED, State.FAILED,
                                               State.CANCELLED) else None
    result = TaskResult(
        task=task if task is not None else _task_for(bridge, job),
        id=str(job.id),
        status=TaskResultStatus(STATUS[state]),
        enqueued_at=job.created_at,
        started_at=_at(attempts[0].started_at) if attempts else None,
        finished_at=None if finished is None else datetime.fromisoformat(finished),
        last_attempted_at=_at(attempts[-1].started_at) if attempts else None,
        args=job.args,
        kwargs=job.kwargs,
        backend=bridge.alias,
        errors=errors,
        worker_ids=[a.worker or "" for a in attempts],
    )
    if state is State.SUCCEEDED:
        object.__setattr__(result, "_return_value", row["result"])
    return result


def _at(ts: float | None) -> datetime | None:
    return to_datetime(ts)


def find_result(bridge: Bridge, result_id: Any) -> Any:
    """``get_result``: the TaskResult of job ``result_id``; TaskResultDoesNotExist for an id
    that is no job's (never enqueued, pruned, or not a number)."""
    from django.tasks.exceptions import TaskResultDoesNotExist

    try:
        job_id = int(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(result_id) from None
    job = bridge.app.get_job(job_id)
    if job is None:
        raise TaskResultDoesNotExist(result_id)
    return to_result(bridge, job)


def running_result(bridge: Bridge, task: Any, job_id: int, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
    """In a worker: the running job's TaskResult (RUNNING), for the signals and the task's
    ``TaskContext``: one read of the job and its attempts, so ``worker_ids`` and ``errors``
    hold the earlier attempts too."""
    from django.tasks.base import TaskResultStatus

    job = bridge.app.get_job(job_id)
    if job is None:  # cancelled and pruned between the claim and this read
        from django.tasks.exceptions import TaskResultDoesNotExist

        raise TaskResultDoesNotExist(str(job_id))
    result = to_result(bridge, job, task=task)
    # the job row as the supervisor sees it may lag a job sent ahead: this attempt runs now
    object.__setattr__(result, "status", TaskResultStatus.RUNNING)
    object.__setattr__(result, "args", list(args))
    object.__setattr__(result, "kwargs", dict(kwargs))
    return result
