"""Job states, the transitions between them, and the ``Job`` handle users hold."""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litejobs.errors import JobCancelled, JobFailed

if TYPE_CHECKING:
    from litejobs.app import App

__all__ = ["TERMINAL", "TRANSITIONS", "Attempt", "Job", "State"]


class State(enum.StrEnum):
    """Where a job is in its life. Each member says who moves a job out of it."""

    WAITING = "waiting"
    """A workflow step whose upstream steps have not all succeeded, or a token not completed
    yet. Left by: the success of its last upstream step (to queued, or scheduled with a
    delay), in that same transaction; the failure or cancellation of an upstream step (to
    cancelled, "upstream step N failed"); cancel. A token leaves it by its completion
    (succeeded) or its timeout (failed)."""

    SCHEDULED = "scheduled"
    """Waits for its ``run_at`` (a delay, or a retry's back-off). Left by: promote (the
    supervisor's maintenance, at ``run_at``) or cancel."""

    QUEUED = "queued"
    """Ready to run. Left by: claim (a supervisor hands it to a worker), cancel, or a debounced
    enqueue of its key (back to scheduled)."""

    RUNNING = "running"
    """An attempt holds its lease. Left by: the attempt's outcome (succeeded, failed, or
    scheduled for a retry), rescue (lease expired or worker died), drain (back to queued) or
    cancel."""

    SUCCEEDED = "succeeded"
    """Terminal: the task returned. Left by: prune only."""

    FAILED = "failed"
    """Terminal: the error was final or retries ran out. Left by: manual retry (to queued,
    or to waiting for a step whose upstream steps run again), or prune."""

    CANCELLED = "cancelled"
    """Terminal: cancelled or expired. Left by: manual retry, the retry of the upstream step
    that cancelled it (back to waiting), or prune."""


TERMINAL: frozenset[State] = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

#: The single source of truth for state changes; the store's CHECK constraints and guarded
#: updates are derived from it.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.WAITING: frozenset(
        {State.QUEUED, State.SCHEDULED, State.CANCELLED, State.SUCCEEDED, State.FAILED}
    ),
    State.SCHEDULED: frozenset({State.QUEUED, State.CANCELLED}),
    State.QUEUED: frozenset({State.RUNNING, State.SCHEDULED, State.CANCELLED}),
    State.RUNNING: frozenset(
        {State.SUCCEEDED, State.SCHEDULED, State.QUEUED, State.FAILED, State.CANCELLED}
    ),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset({State.QUEUED, State.WAITING}),
    State.CANCELLED: frozenset({State.QUEUED, State.WAITING}),
}


def sources(target: State) -> tuple[State, ...]:
    """The states a job may move to ``target`` from, per ``TRANSITIONS``."""
    return tuple(s for s, targets in TRANSITIONS.items() if target in targets)


_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def to_datetime(ts: float | None) -> datetime | None:
    """A stored UTC timestamp as an aware datetime (one a datetime cannot show, written
    before enqueue bounded run_at to year 9999, is clamped rather than raising)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        return _EARLIEST if ts < 0 else _LATEST


def iso(ts: float | None) -> str | None:
    """A stored UTC timestamp as ISO-8601 text."""
    dt = to_datetime(ts)
    return None if dt is None else dt.isoformat()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job. ``outcome`` is running, succeeded, failed, interrupted or stale."""

    attempt: int
    outcome: str
    started_at: float | None
    finished_at: float | None
    error: str | None
    traceback: str | None
    worker: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "outcome": self.outcome,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "error": self.error,
            "traceback": self.traceback,
            "worker": self.worker,
        }



class Patience:
    """How ``Job.result`` and ``aresult`` wait: pauses from 1 ms doubling to 50 ms between
    looks at the job, and a TimeoutError naming its state once ``timeout`` seconds passed."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.next = 0.001

    def pause(self, job: Job, state: State) -> float:
        """Seconds to wait before the next look at ``job``, still in ``state``."""
        pause = self.next
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"job {job.id} is still {state.value} after {self.timeout} s; "
                    f"wait longer, or run `litejobs explain {job.id}` to see why"
                )
            pause = min(pause, left)
        self.next = min(pause * 2, 0.05)
        return pause


class Job:
    """A handle on one enqueued call. Attributes reflect the last read; ``refresh()`` re-reads."""

    __slots__ = ("_app", "_row", "id")

    def __init__(self, app: App, row: Mapping[str, Any]) -> None:
        self._app = app
        self._row: Mapping[str, Any] = row
        self.id: int = int(row["id"])

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.task} {self.state.value}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other._app is self._app

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def state(self) -> State:
        """The job's state as of the last read."""
        return State(self._row["state"])

    @property
    def task(self) -> str:
        return str(self._row["task"])

    @property
    def queue(self) -> str:
        return str(self._row["queue"])

    @property
    def attempt(self) -> int:
        """How many attempts have started (0 before the first)."""
        return int(self._row["attempt"])

    @property
    def priority(self) -> int:
        return int(self._row["priority"])

    @property
    def args(self) -> list[Any]:
        return list(json.loads(self._row["args"]))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(json.loads(self._row["kwargs"]))

    @property
    def run_at(self) -> datetime:
        dt = to_datetime(self._row["run_at"])
        assert dt is not None
        return dt

    @property
    def created_at(self) -> datetime:
        dt = to_datetime(self._row["created_at"])
        assert dt is not None
        return dt

    @property
    def error(self) -> str | None:
        """The last attempt's error text, or the reason it was cancelled."""
        value = self._row["error"]
        return None if value is None else str(value)

    @property
    def key(self) -> str | None:
        value = self._row["key"]
        return None if value is None else str(value)

    @property
    def tags(self) -> list[str]:
        """The job's tags (``options(tags=...)``), in the order given."""
        raw = self._row.get("tags")
        return [] if raw is None else list(json.loads(raw))

    @property
    def progress(self) -> tuple[float, str | None] | None:
        """``(fraction, message)`` as last reported by the task (``set_progress``), or None.
        Updates are written a few times a second at most: this lags the task by up to ~0.3 s."""
        value = self._row.get("progress")
        return None if value is None else (float(value), self._row.get("progress_message"))

    @property
    def workflow(self) -> int | None:
        """The id of the workflow run this job is a step of (None for a plain job)."""
        value = self._row.get("workflow")
        return None if value is None else int(value)

    @property
    def metadata(self) -> dict[str, Any]:
        """What the task stored with ``set_metadata`` (merged), ``{}`` when nothing."""
        raw = self._row.get("metadata")
        return {} if raw is None else dict(json.loads(raw))

    def follow(self, timeout: float = 60.0, interval: float = 0.05) -> Iterator[Job]:
        """Yield the job (a refreshed copy) now and at every change of its state, progress or
        metadata, until it ends (the terminal job is yielded last) or ``timeout`` seconds
        pass: then the iteration just stops, no error (check ``job.state``). Polls the row
        every ``interval`` seconds, which is one indexed read."""
        deadline = time.monotonic() + timeout
        seen: tuple[Any, ...] | None = None
        while True:
            self.refresh()
            r = self._row
            now_seen = (r["state"], r.get("progress"), r.get("progress_message"),
                        r.get("metadata"), r["attempt"])
            if now_seen != seen:
                seen = now_seen
                yield Job(self._app, r)  # a snapshot: this handle moves on
            if self.state in (State.SUCCEEDED, State.FAILED, State.CANCELLED):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(interval, left))

    def refresh(self) -> Job:
        """Re-read the job from the database; returns ``self``."""
        row = self._app.store.get_job(self.id)
        if row is None:
            raise LookupError(
                f"job {self.id} no longer exists (pruned after its retention ran out)"
            )
        self._row = row
        return self

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the job is terminal and return its result (for a task that returned
        ``litejobs.then``: its continuation's, following chains of them).

        Raises ``JobFailed`` or ``JobCancelled`` for those outcomes and ``TimeoutError`` when
        ``timeout`` seconds pass first (``None`` waits for ever).
        """
        patience = Patience(timeout)
        job = self  # then the continuation of a job that returned litejobs.then, and its own
        while True:
            job, done, value = job._look()
            if done:
                return value
            time.sleep(patience.pause(job, value))

    async def aresult(self, timeout: float | None = None) -> Any:
        """``result(timeout)`` for async code: waits without blocking the event loop."""
        from litejobs.aio import aresult

        return await aresult(self, timeout)

    def _look(self) -> tuple[Job, bool, Any]:
        """One look on the way to ``result``: (the job looked at, True, its result) once it
        succeeded (following continuations), (the job, False, its state) while it is not
        terminal; raises ``JobFailed``/``JobCancelled``."""
        job = self
        while True:
            job.refresh()
            state = job.state
            if state is State.SUCCEEDED:
                nxt = job._row.get("continuation")
                if nxt is not None:
                    job = Job(self._app, {**job._row, "id": nxt})
                    continue
                raw = job._row["result"]
                return job, True, None if raw is None else json.loads(raw)
            if state is State.FAILED:
                raise JobFailed(job.id, job.error)
            if state is State.CANCELLED:
                raise JobCancelled(job.id, job.error)
            return job, False, state

    def cancel(self) -> bool:
        """Cancel the job: a pending one never runs, a running one is stopped.

        Returns True when this call cancelled it, False when it had already ended.
        """
        done = self._app.store.cancel(self.id, reason="cancelled", now=self._app.clock())
        self._app.ring(b"c")
        self.refresh()
        return done

    def retry(self, retries: int = 0) -> bool:
        """Queue a failed or cancelled job again with ``retries`` more retries (a workflow
        step: the steps it cancelled wait again). False when it had not ended failed or
        cancelled; ValueError for a step whose upstream step has not succeeded."""
        done = self._app.store.retry(self.id, retries, self._app.clock())
        self._app.ring(b"e")
        self.refresh()
        return done

    def attempts(self) -> list[Attempt]:
        """Every attempt so far, oldest first (the running one included)."""
        return self._app.store.attempts(self.id)

    def to_dict(self) -> dict[str, Any]:
        """The job as a JSON-ready object (the shape ``litejobs jobs --json`` prints)."""
        r = self._row
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "state": self.state.value,
            "attempt": self.attempt,
            "max_attempts": r["max_attempts"],
            "priority": self.priority,
            "args": self.args,
            "kwargs": self.kwargs,
            "key": self.key,
            "run_at": iso(r["run_at"]),
            "created_at": iso(r["created_at"]),
            "started_at": iso(r["started_at"]),
            "finished_at": iso(r["finished_at"]),
            "timeout": r["timeout"],
            "result": None if r["result"] is None else json.loads(r["result"]),
            "error": self.error,
            "leased_by": r["leased_by"],
            "lease_until": iso(r["lease_until"]),
            "tags": self.tags,
            "progress": None if self.progress is None else {
                "fraction": self.progress[0], "message": self.progress[1]},
            "metadata": self.metadata,
            "workflow": r.get("workflow"),
            "continuation": r.get("continuation"),
        }
