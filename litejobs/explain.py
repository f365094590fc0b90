"""Why is this job not running? One sentence, from the facts in the database.

The checks follow the order a claim applies them, so the first reason found is the one that
holds the job back now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from litejobs.config import Config, parse_rate
from litejobs.job import iso
from litejobs.store import RATE_MARGIN, Row, Store

__all__ = ["Explanation", "explain"]

#: A supervisor whose heartbeat is older than this is taken for gone.
SUPERVISOR_STALE = 30.0


@dataclass(frozen=True, slots=True)
class Explanation:
    """``reason`` is a stable code (for ``--json``); ``message`` is the sentence."""

    job_id: int
    state: str
    reason: str
    message: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.job_id, "state": self.state, "reason": self.reason,
                "message": self.message, **self.details}


def explain(store: Store, job_id: int, config: Config,
            tasks: Collection[str] | None = None, now: float | None = None) -> Explanation | None:
    """Explain job ``job_id`` (None when there is no such job). ``tasks``: the task names the
    configured app registers, when known."""
    now = time.time() if now is None else now
    job = store.get_job(job_id)
    if job is None:
        return None
    state = job["state"]

    def say(reason: str, message: str, **details: Any) -> Explanation:
        return Explanation(job_id, state, reason, f"job {job_id} ({job['task']}): {message}",
                           details)

    if state == "running":
        return say("running", f"running since {iso(job['started_at'])} (attempt "
                   f"{job['attempt']}, worker {job['leased_by']}, lease until "
                   f"{iso(job['lease_until'])})")
    if state in ("succeeded", "failed", "cancelled"):
        last = f": {job['error']}" if job["error"] else ""
        return say(state, f"finished {state} at {iso(job['finished_at'])} after "
                   f"{job['attempt']} attempt(s){last}", error=job["error"])
    if tasks is not None and job["task"] not in tasks:
        return say("unknown_task", f"no worker can run it: the app has no task named "
                   f"{job['task']!r}; it will fail when claimed. Register it, or cancel it")
    if state == "scheduled":
        why = "a retry's back-off" if job["attempt"] else "a delay"
        return say("scheduled", f"scheduled until {iso(job['run_at'])} ({why}; "
                   f"{max(0.0, job['run_at'] - now):.1f} s from now)", run_at=iso(job["run_at"]))
    return _queued(store, job, config, now, say)


def _queued(store: Store, job: Row, config: Config, now: float,
            say: Callable[..., Explanation]) -> Explanation:
    queue = job["queue"]
    if job["expires_at"] is not None and job["expires_at"] < now:
        return say("expired", f"it expired at {iso(job['expires_at'])} and will be cancelled")
    if store.queue_paused(queue):
        return say("queue_paused", f"queue {queue!r} is paused; `litejobs queues resume "
                   f"{queue}` lets it run")
    limits = config.queues.get(queue)
    if limits is not None and limits.concurrency is not None:
        count, holders = store.running_in_queue(queue)
        if count >= limits.concurrency:
            return say("queue_at_capacity", f"queue {queue!r} is at its concurrency cap "
                       f"({count}/{limits.concurrency} running: jobs "
                       f"{', '.join(map(str, holders))})", holders=holders)
    key = job["concurrency_key"]
    if key is not None:
        holders = store.running_with_key(key)
        limit = job["concurrency_limit"] or 1
        if len(holders) >= limit:
            return say("key_at_limit", f"concurrency key {key!r} is at its limit of "
                       f"{limit} (held by job {', '.join(map(str, holders))})",
                       holders=holders)
    if limits is not None and limits.rate_limit:
        count, period = parse_rate(limits.rate_limit)
        period += min(RATE_MARGIN, period * 0.1)  # the window a claim counts (Tx.claim)
        used, oldest = store.rate_window(queue, now - period)
        if used >= count and oldest is not None:
            return say("rate_limited", f"queue {queue!r} is rate-limited ({limits.rate_limit}): "
                       f"next slot at {iso(oldest + period)}", until=iso(oldest + period))
    serving = [s for s in store.supervisors() if now - s["heartbeat_at"] < SUPERVISOR_STALE
               and (not s["queues"] or queue in s["queues"].split(","))]
    if not serving:
        return say("no_supervisor", f"no running supervisor serves queue {queue!r}; start "
                   "`litejobs run` (without --queues, or with it listing this queue)")
    ahead = store.ahead_of(job)
    return say("waiting", f"queued, waiting for a free worker: {ahead} job(s) of queue "
               f"{queue!r} run before it", ahead=ahead)
