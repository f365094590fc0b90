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
from litejobs.store.schema import TOKEN_TASK

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
    configured app registers, when known. ``now``: on the store's clock (the times it holds
    are; on PostgreSQL the server's), by default this host's corrected by clock_offset."""
    now = time.time() + store.clock_offset() if now is None else now
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
    if state == "succeeded" and job.get("continuation") is not None:
        nxt = job["continuation"]
        return say("continued", f"finished succeeded at {iso(job['finished_at'])}, "
                   f"returning litejobs.then: its result is job {nxt}'s (`litejobs explain "
                   f"{nxt}`)", continuation=nxt)
    if state in ("succeeded", "failed", "cancelled"):
        last = f": {job['error']}" if job["error"] else ""
        return say(state, f"finished {state} at {iso(job['finished_at'])} after "
                   f"{job['attempt']} attempt(s){last}", error=job["error"])
    if state == "waiting":
        return _waiting(store, job, now, say, tasks)
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
        if job.get("flow_rate") is not None:
            rate, period = int(job["flow_rate"]), float(job["flow_period"])
            used, free_at = store.flow_window(key, now)
            if used >= rate and free_at is not None:
                return say("key_rate_limited", f"flow key {key!r} is at its rate ({used} "
                           f"start(s) in the last {period:g} s, at most {rate}): next start "
                           f"at {iso(free_at)}", until=iso(free_at))
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


def _token_wait(token_id: int, expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return f"waiting for `litejobs token complete {token_id}` (no timeout)"
    if expires_at < now:
        return (f"its timeout passed at {iso(expires_at)}: a running supervisor fails it "
                "(and cancels what waits on it)")
    return (f"waiting for `litejobs token complete {token_id}` until {iso(expires_at)} "
            f"({expires_at - now:.0f} s from now; then it fails)")


def _waiting(store: Store, job: Row, now: float, say: Callable[..., Explanation],
             tasks: Collection[str] | None) -> Explanation:
    """A token, or a workflow step whose upstream steps have not all succeeded."""
    if job["task"] == TOKEN_TASK:
        return say("token", "a token, " + _token_wait(job["id"], job["expires_at"], now),
                   expires_at=iso(job["expires_at"]))
    pending: list[tuple[int, str, str]] = []  # (id, state, task) of unfinished upstream steps
    upstream = store.upstream_of(job["id"])
    for up in dict.fromkeys(upstream):  # a step may list one upstream step twice
        row = store.get_job(up)
        if row is None:
            pending.append((up, "pruned", "?"))
        elif row["state"] != "succeeded":
            pending.append((up, str(row["state"]), str(row["task"])))
    details = {"upstream": upstream,
               "waiting_on": [{"id": i, "state": st, "task": t} for i, st, t in pending]}
    unknown = ""
    if tasks is not None and job["task"] not in tasks:
        unknown = (f"; then no worker can run it: the app has no task named {job['task']!r}. "
                   "Register it, or cancel it")
    if not pending:
        return say("stuck", f"waiting, yet its {len(upstream)} upstream step(s) have all "
                   "succeeded: it should have been queued in the transaction of the last "
                   "success. Please report this; `litejobs cancel` and enqueue it again "
                   "meanwhile" + unknown, **details)
    shown = []
    for i, st, t in pending[:5]:
        if t == TOKEN_TASK:
            token_row = store.get_job(i)
            expires = None if token_row is None else token_row["expires_at"]
            shown.append(f"token {i} ({_token_wait(i, expires, now)})")
        else:
            shown.append(f"job {i} ({t}, {st})")
    more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
    return say("waiting_upstream", f"waiting on {len(pending)} of its {len(set(upstream))} "
               f"upstream step(s): {', '.join(shown)}{more}" + unknown, **details)
