"""One write transaction's statements: ``Tx``, which ``Store.write(fn)`` hands ``fn``. Here:
outcomes with fencing, cron fires, leases, rescues and pruning; its claims with every limit come
from ``claims``, its inserts from ``inserts`` and workflows' statements from ``flows``, as
mixins."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence

import apsw

from litejobs.job import State
from litejobs.newjob import NewJob, NewJobs
from litejobs.store import sql
from litejobs.store.claims import RATE_MARGIN, ClaimsMixin, sent_order
from litejobs.store.flows import WorkflowsTxMixin
from litejobs.store.inserts import InsertsMixin, NewRow
from litejobs.store.metrics import MetricsTxMixin
from litejobs.store.rows import QueueLimits, Row, _dicts, _like_prefix, _scalar

__all__ = ["RATE_MARGIN", "NewJob", "NewJobs", "NewRow", "QueueLimits", "Row", "Tx",
           "pid_namespace", "sent_order"]


@functools.lru_cache(maxsize=1024)
def _quoted(name: str) -> str:
    """A worker name as a JSON string (a few names, over and over)."""
    return json.dumps(name)


def pid_namespace() -> str | None:
    """This process's PID namespace as ``"device:inode"`` of ``/proc/self/ns/pid`` (None where
    there is no such file): two processes share a namespace when these are equal, and a pid
    names the same process only inside one namespace."""
    try:
        st = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


class Tx(ClaimsMixin, InsertsMixin, WorkflowsTxMixin, MetricsTxMixin):
    """The statements a supervisor runs inside one write transaction."""

    def __init__(self, cursor: apsw.Cursor, queues_seen: set[str] | None = None) -> None:
        self.cursor = cursor
        self.next_slot: float | None = None
        self._queues_seen: set[str] = set() if queues_seen is None else queues_seen

    # --- cron ---------------------------------------------------------------------------------

    def cron_entry(self, name: str) -> Row | None:
        rows = list(_dicts(self.cursor.execute(sql.SELECT_CRON_ENTRY, (name,))))
        return rows[0] if rows else None

    def cron_reset(self, name: str, schedule: str, since: float) -> None:
        """Start (or restart, after its schedule changed) an entry's history at ``since``."""
        self.cursor.execute(sql.UPSERT_CRON_ENTRY, (name, schedule, since))

    def cron_fire(self, entry: str, instant: float, job: NewJob | None, outcome: str,
                  now: float) -> int | None:
        """Mark ``instant`` of ``entry`` handled; with a job, insert it in this transaction.

        Returns the new job's id, or None when the instant was already handled (by another
        supervisor, or before a restart) or is recorded as skipped.
        """
        self.cursor.execute(sql.INSERT_CRON_FIRE, (entry, instant, outcome, now))
        if self.cursor.connection.changes() != 1 or job is None:
            return None
        job_id = int(self.insert(job, now)["id"])
        self.cursor.execute(sql.SET_CRON_FIRE_JOB, (job_id, entry, instant))
        return job_id

    def cron_advance(self, name: str, instant: float, job_id: int | None) -> None:
        self.cursor.execute(sql.ADVANCE_CRON_ENTRY, (instant, job_id, name))

    def job_state(self, job_id: int) -> str | None:
        value = _scalar(self.cursor, sql.SELECT_JOB_STATE, (job_id,))
        return None if value is None else str(value)

    def prune_cron_fires(self, before: float, limit: int = 500) -> int:
        self.cursor.execute(sql.PRUNE_CRON_FIRES, (before, limit))
        return self.cursor.connection.changes()

    def succeed(
        self, job_id: int, attempt: int, result: str, worker: str, started: float, now: float
    ) -> bool:
        """Record a successful attempt; False (and a ``stale`` attempt) if it lost its lease."""
        self.cursor.execute(sql.FINISH_SUCCEEDED, (result, started, now, worker, job_id, attempt))
        if self.cursor.connection.changes() == 1:
            return True
        self._stale(job_id, attempt, worker, started, now, "reported success")
        return False

    def set_progress_many(
            self, updates: Sequence[tuple[int, int, float | None, str | None, str | None]],
    ) -> int:
        """Write running jobs' newest ``(job_id, attempt, fraction, message, metadata)`` in
        one statement (metadata: JSON text of an object, merged as a JSON merge patch; None
        leaves a value as it is). An attempt no longer running is left alone: its progress
        came too late. Returns how many jobs were written."""
        if not updates:
            return 0
        # metadata is JSON text already (protocol.decode_report wrote it): spliced in as is
        text = "[" + ",".join(f"[{int(i)},{int(n)},{json.dumps(f)},{json.dumps(m)},"
                              f"{'null' if md is None else md}]"
                              for i, n, f, m, md in updates) + "]"
        self.cursor.execute(sql.SET_PROGRESS_MANY, (text,))
        return int(self.cursor.connection.changes())

    def succeed_many(self, done: Sequence[tuple[int, int, str, str, float, float]]) -> int:
        """``succeed`` for many ``(job_id, attempt, result, worker, started, now)`` in one
        statement; returns how many were recorded (the others become ``stale`` attempts)."""
        if len(done) < 2:
            return sum(self.succeed(*d) for d in done)
        text = "[" + ",".join(
            f"[{job_id},{attempt},{result},{started!r},{now!r},{_quoted(worker)}]"
            for job_id, attempt, result, worker, started, now in done) + "]"
        recorded = {int(r[0]) for r in self.cursor.execute(sql.FINISH_SUCCEEDED_MANY, (text,))}
        for job_id, attempt, _, worker, started, now in done:
            if job_id not in recorded:
                self._stale(job_id, attempt, worker, started, now, "reported success")
        return len(recorded)

    def fail(
        self,
        job_id: int,
        attempt: int,
        error: str,
        traceback: str | None,
        worker: str | None,
        started: float | None,
        now: float,
        retry_at: float | None,
        crashed: bool = False,
    ) -> bool:
        """Record a failed attempt: scheduled again at ``retry_at``, or failed when it is None."""
        crash = 1 if crashed else 0
        if retry_at is None:
            self.cursor.execute(sql.FINISH_FAILED, (error, crash, now, job_id, attempt))
        else:
            state = State.SCHEDULED.value if retry_at > now else State.QUEUED.value
            self.cursor.execute(
                sql.FINISH_RETRY, (state, max(retry_at, now), error, crash, job_id, attempt)
            )
        if self.cursor.connection.changes() == 1:
            self._attempt(job_id, attempt, "failed", worker, started, now, error, traceback)
            if crashed:  # its worker or supervisor died: maybe before its start was reported
                self._settle_unknown_start(job_id, now)
            return True
        self._stale(job_id, attempt, worker, started, now, f"reported failure: {error}", error)
        return False

    def interrupt(
        self, job_id: int, attempt: int, reason: str, worker: str | None, started: float | None,
        now: float,
    ) -> bool:
        """Put a running job back to queued without counting the attempt (drain)."""
        self.cursor.execute(sql.REQUEUE_INTERRUPTED, (now, job_id, attempt))
        if self.cursor.connection.changes() == 1:
            self._attempt(job_id, attempt, "interrupted", worker, started, now, reason, None)
            self._settle_unknown_start(job_id, now)  # (a rescue cannot tell if it began)
            return True
        return False

    def renew(self, leases: Iterable[tuple[int, int]], until: float) -> list[tuple[int, int]]:
        """Extend the leases of ``(job_id, attempt)`` pairs; returns the pairs that were lost."""
        lost: list[tuple[int, int]] = []
        for job_id, attempt in leases:
            self.cursor.execute(sql.RENEW_LEASE, (until, job_id, attempt))
            if self.cursor.connection.changes() != 1:
                lost.append((job_id, attempt))
        return lost

    def expired_leases(self, now: float, limit: int = 500) -> list[Row]:
        return list(_dicts(self.cursor.execute(sql.EXPIRED_LEASES, (now, limit))))

    def leases_of(self, prefix: str) -> list[Row]:
        """Running jobs whose ``leased_by`` starts with ``prefix`` (a supervisor's id)."""
        return list(_dicts(self.cursor.execute(sql.RUNNING_LEASES, (_like_prefix(prefix),))))

    def prune(self, before: float, limit: int = 500) -> int:
        self.cursor.execute(sql.PRUNE, (before, limit))
        return self.cursor.connection.changes()

    def heartbeat(
        self, supervisor: str, hostname: str, pid: int, started: float, now: float, queues: str
    ) -> None:
        """Record that ``supervisor`` (this process: its PID namespace is read here) lives."""
        self.cursor.execute(sql.UPSERT_SUPERVISOR,
                            (supervisor, hostname, pid, started, now, queues, pid_namespace()))

    def forget_supervisor(self, supervisor: str) -> None:
        self.cursor.execute(sql.DELETE_SUPERVISOR, (supervisor,))

    def forget_supervisors_before(self, before: float) -> None:
        self.cursor.execute(sql.DELETE_OLD_SUPERVISORS, (before,))

    def _attempt(
        self, job_id: int, attempt: int, outcome: str, worker: str | None,
        started: float | None, finished: float, error: str | None, traceback: str | None,
    ) -> None:
        self.cursor.execute(sql.RECORD_ATTEMPT, (job_id, attempt, outcome, worker, started,
                                                 finished, error, traceback))

    def _stale(
        self, job_id: int, attempt: int, worker: str | None, started: float | None,
        finished: float, what: str, error: str | None = None,
    ) -> None:
        """Record a refused outcome of ``attempt`` (``error``: the failure it reported) as a
        ``stale`` attempt, unless it is that attempt's recorded outcome written again."""
        self.cursor.execute(sql.RECORD_STALE, {
            "job": job_id, "attempt": attempt, "worker": worker, "started": started,
            "finished": finished, "error": error,
            "stale": f"stale: attempt {attempt} {what} after losing its lease; outcome refused"})
