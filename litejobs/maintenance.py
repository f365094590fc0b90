"""Maintenance: rescue and prune (the retry rule they apply lives in ``litejobs.retry``).

Each function runs one batch inside the caller's write transaction and returns a count, so the
supervisor's loop stays a thin wrapper and tests drive them with any ``now``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from litejobs.errors import WorkerDied
from litejobs.retry import Failure, after_error
from litejobs.store import Tx, sent_order
from litejobs.store.tx import pid_namespace
from litejobs.task import Task

__all__ = ["Failure", "after_error", "prune", "rescue_dead_supervisors", "rescue_expired"]

log = logging.getLogger("litejobs")
jobs_log = logging.getLogger("litejobs.jobs")


def _rescue(tx: Tx, rows: Sequence[Mapping[str, Any]], tasks: Mapping[str, Task[Any, Any]],
            crash_limit: int, now: float, why: str) -> None:
    """Return the running jobs ``rows`` of workers whose supervisor let go of them.

    A worker runs the jobs it was sent one after another, and the rows still running are
    those whose outcome was not recorded, so of each worker's rows the first sent is the one
    it was running (or had just finished, its outcome not yet recorded). That one is a crash:
    it counts towards ``crash_limit`` and ``max_attempts`` like any worker death. The ones
    queued behind it were sent ahead and had not started (but for the one right behind a job
    that had just finished): they go back to queued as interrupted — not counted, but keeping
    their attempt number, since the rescuer cannot rule out that one had just begun and a
    number that ran once is never handed out again. Counting them would fail jobs that never
    ran, after a few supervisor restarts, just for having been sent ahead.
    """
    by_worker: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_worker.setdefault(row["leased_by"] or "", []).append(row)
    for held in by_worker.values():
        held.sort(key=sent_order)
        first = held[0]
        error = f"WorkerDied: {why}"
        plan = after_error(task=tasks.get(first["task"]), error=error, error_type=WorkerDied,
                           attempt=first["attempt"], interrupts=first["interrupts"],
                           max_attempts=first["max_attempts"], crashes=first["crashes"],
                           crash_limit=crash_limit, now=now, crashed=True)
        tx.fail(first["id"], first["attempt"], plan.error, None, first["leased_by"],
                first["started_at"], now, plan.retry_at, crashed=True)
        tx.add_figures([(int(now // 60), "outcome", str(first["task"]), "crashed", 1.0)])
        # WARNING: a rescue means a supervisor or worker died or stalled. Logged in the rescue's
        # transaction: should it roll back, the next pass rescues (and logs) the job again.
        jobs_log.warning(
            "job %s (%s, attempt %s) rescued: %s; %s", first["id"], first["task"],
            first["attempt"], why, "retrying" if plan.retry_at is not None else "failed for good",
            extra={"job": first["id"], "task": first["task"], "attempt": first["attempt"],
                   "outcome": "rescued"})
        for row in held[1:]:
            tx.interrupt(row["id"], row["attempt"],
                         f"{why}; the job was sent ahead to its worker, behind job "
                         f"{first['id']}, so it is returned to queued, not counted as an "
                         "attempt",
                         row["leased_by"], None, now)
        if len(held) > 1:
            log.warning("returned %d job(s) that waited behind job %s in the same worker to "
                        "queued (not counted as attempts)", len(held) - 1, first["id"])


def rescue_expired(tx: Tx, now: float, tasks: Mapping[str, Task[Any, Any]],
                   crash_limit: int, limit: int = 500) -> int:
    """Return running jobs whose lease ran out (their supervisor or worker stopped renewing)."""
    rows = tx.expired_leases(now, limit)
    _rescue(tx, rows, tasks, crash_limit, now,
            "its lease expired (the worker or its supervisor stopped renewing it)")
    return len(rows)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: How often a supervisor writes its heartbeat (the supervisor's HEARTBEAT).
HEARTBEAT_EVERY = 5.0


def _gone(sup: Mapping[str, Any], now: float, host: str, pid_ns: str | None,
          lease: float) -> str | None:
    """Why supervisor ``sup`` is judged gone, or None while it may be alive."""
    if sup["hostname"] == host and sup.get("pid_ns") == pid_ns:
        # Its pid names the same process here only inside the same PID namespace: two
        # containers on one host network share a host name, not their pids.
        if sup["pid"] != os.getpid() and _alive(sup["pid"]):
            return None
        return f"its supervisor (pid {sup['pid']}) is gone"
    # Another host or PID namespace: its pid means nothing here, only its silence does. A
    # live supervisor writes a heartbeat every few seconds and renews its leases every third
    # of a lease, so one silent for longer than both is no more; any sooner and a supervisor
    # stalled for a moment would see its running jobs started a second time.
    silent = now - sup["heartbeat_at"]
    if silent <= max(3 * HEARTBEAT_EVERY, lease):
        return None
    return (f"its supervisor (pid {sup['pid']} on {sup['hostname']}, not in this PID namespace) "
            f"has not been heard from for {silent:.0f} s")


def rescue_dead_supervisors(tx: Tx, now: float, me: str, tasks: Mapping[str, Task[Any, Any]],
                            crash_limit: int, supervisors: Sequence[Mapping[str, Any]],
                            lease: float = 30.0) -> int:
    """Return at once the jobs of supervisors that are gone, without waiting for their
    leases to run out: on this host and in this PID namespace, those whose process is gone;
    elsewhere (another container), those not heard from for ``max(15 s, lease)``."""
    host = socket.gethostname()
    ours = pid_namespace()
    count = 0
    for sup in supervisors:
        if sup["id"] == me:
            continue
        why = _gone(sup, now, host, ours, lease)
        if why is None:
            continue
        rows = tx.leases_of(f"{sup['id']}:")
        _rescue(tx, rows, tasks, crash_limit, now, why)
        count += len(rows)
        tx.forget_supervisor(sup["id"])
    return count


def prune(tx: Tx, now: float, retention: float, limit: int = 500) -> int:
    """Delete one batch of terminal jobs that finished more than ``retention`` seconds ago."""
    return tx.prune(now - retention, limit)
