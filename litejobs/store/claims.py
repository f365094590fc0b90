"""A write transaction's claims: every limit (queue concurrency, rate windows, concurrency
keys and their parked jobs, expiry) enforced inside it, and the statements that make jobs ready
for one. ``Tx`` (``litejobs.store.tx``) takes them from ``ClaimsMixin``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apsw

from litejobs.store import sql
from litejobs.store.flowkeys import FLOW_UNCLAIMED
from litejobs.store.ratestarts import (
    FLOW_RATED,
    QUEUE_RATED,
    RATE_MARGIN,
    RateStartsMixin,
    _soonest,
)
from litejobs.store.rows import QueueLimits, Row, _dicts, _id_list, _scalar
from litejobs.validate import UNLIMITED

__all__ = ["CLAIM_ROUNDS", "FLOW_RATED", "PARK_PER_CLAIM", "QUEUE_RATED", "RATE_MARGIN",
           "ClaimsMixin", "best_first", "sent_order"]



def _claimed(row: Row) -> Row:
    """A claimed row as the supervisor uses it. Its text columns (read as bytes, see
    sql.CLAIM) become str; text that is not UTF-8 (written outside litejobs) stays bytes in
    the arguments, for the worker to fail that job, and gets replacement characters in the
    task and queue names. Numbers of the wrong type (also only from outside litejobs) get
    the defaults a new job has, so one odd row never stops the claim of the others."""
    for name in ("task", "queue", "args", "kwargs"):
        value = row[name]
        if type(value) is bytes:
            try:
                row[name] = value.decode()
            except UnicodeDecodeError:
                if name in ("task", "queue"):
                    row[name] = value.decode(errors="replace")
    if not (type(row["max_attempts"]) is int and type(row["interrupts"]) is int
            and type(row["crashes"]) is int and type(row["scheduled_at"]) is float
            and (row["timeout"] is None or type(row["timeout"]) is float)):
        _repair(row)
    return row


def _repair(row: Row) -> None:
    def number(value: Any, kind: type[int] | type[float], default: Any) -> Any:
        try:
            out = kind(value)
        except (TypeError, ValueError, OverflowError):
            return default
        return out if math.isfinite(out) and abs(out) < 2**62 else default

    row["max_attempts"] = max(1, number(row["max_attempts"], int, 1))
    row["interrupts"] = max(0, number(row["interrupts"], int, 0))
    row["crashes"] = max(0, number(row["crashes"], int, 0))
    row["scheduled_at"] = number(row["scheduled_at"], float, float(row["run_at"] or 0.0))
    if row["timeout"] is not None:
        row["timeout"] = number(row["timeout"], float, None)


#: Most jobs one claim parks (~8 µs each): a key that filled up with a long backlog is parked
#: over a few claims, each holding the write lock briefly; the claim that stops short sets
#: ``next_slot`` to now, so the supervisor claims again at once, not at its next poll.
PARK_PER_CLAIM = 10_000
#: Most looks for candidates one claim takes (each after parking at least one job).
CLAIM_ROUNDS = 16

#: A claim candidate: (-priority, run_at, id, queue, concurrency key, its limit, expiry, flow
#: rate, its period); sorts best first. Expiry: the job has one (it may start only in a slot
#: that starts at once).
_Candidate = tuple[int, float, int, str, str | None, int, bool, int | None, float]


class _Slots:
    """The workers a claim hands jobs to, in order. Slots from ``ahead_from`` on are places
    behind a running job (sent ahead): a job there starts only when the jobs before it end."""

    __slots__ = ("ahead_from", "names", "used")

    def __init__(self, names: Sequence[str], ahead_from: int) -> None:
        self.names = names
        self.ahead_from = ahead_from
        self.used = 0

    @property
    def left(self) -> int:
        return len(self.names) - self.used

    @property
    def ahead(self) -> bool:
        """The next slot is behind a running job."""
        return self.used >= self.ahead_from

    def take(self) -> str:
        self.used += 1
        return self.names[self.used - 1]


def best_first(row: Mapping[str, Any]) -> tuple[int, float, int]:
    """The order ``claim`` returns jobs in and the supervisor sends them to a worker in."""
    return (-row["priority"], row["run_at"], row["id"])


def sent_order(row: Mapping[str, Any]) -> tuple[float, int, float, int]:
    """Where a running job stands among the jobs its worker was sent: by claim (its
    ``started_at`` while running is the claim's time), then best first. A rescue reads it
    from the rows alone to tell the job a worker ran first from the ones queued behind it."""
    return (row["started_at"] or 0.0, *best_first(row))


class ClaimsMixin(RateStartsMixin):
    """``Tx``'s claim statements (the ``ClaimTx`` protocol)."""

    cursor: apsw.Cursor
    next_slot: float | None

    def queues(self) -> list[tuple[str, bool]]:
        """The queues a claim may have to visit, by name, with their paused flag: every queue
        with queued jobs, and every paused one. Queue names with nothing queued are left out,
        so however many there are, a claim does not pay for them."""
        names: set[str] = set()
        paused: set[str] = set()
        for name, flag in self.cursor.execute(sql.QUEUES_TO_VISIT):
            (paused if flag else names).add(str(name))
        return [(name, name in paused) for name in sorted(names | paused)]

    def claim(
        self, worker_ids: Sequence[str], queues: Iterable[QueueLimits], now: float, lease: float,
        ahead_from: int | None = None,
    ) -> list[Row]:
        """Claim up to ``len(worker_ids)`` queued jobs of ``queues``, best first, one per worker.

        Every limit is enforced here, inside the write transaction, so it holds across all
        workers and supervisors on the file: a queue's concurrency (running jobs of the queue),
        its rate limit (a sliding window of start times), each job's concurrency key (running
        jobs sharing the key), each key's rate (a sliding window of its starts: flowkeys), and
        expiry. Each claim bumps the attempt number (the fencing
        token) and takes a lease in the same statement. ``self.next_slot`` is set to the
        moment a rate-limited queue with waiting jobs gets its next slot, or a key waiting for
        room in its rate window gets it.

        ``worker_ids[ahead_from:]`` are places behind a job their worker is running (sent
        ahead). A rate limit and an expiry are promises about starts, not claims. A job with
        an expiry only goes to the slots before ``ahead_from``, which start at once. A rated
        job sent ahead starts when the job before it ends, which no claim knows: its start is
        counted as not yet known (time +infinity, which every window counts) and its row
        says so (``unknown_start``: ``QUEUE_RATED | FLOW_RATED``); its supervisor sets the
        time once it learns the job began (``record_starts``). Starts in the slots that start at
        once are counted at the claim.
        """
        self.next_slot = None
        n = len(worker_ids)
        if n == 0:
            return []
        queues = list(queues)
        self._flow_waits_due(now)
        running: dict[str, int] = {}
        if any(q.concurrency is not None for q in queues):
            running = {str(q): int(c) for q, c in self.cursor.execute(sql.RUNNING_BY_QUEUE)}
        candidates: list[_Candidate] = []
        caps: dict[str, int] = {}
        for q in queues:
            cap = n
            if q.concurrency is not None:
                cap = min(cap, q.concurrency - running.get(q.name, 0))
            if q.rate is not None and cap > 0:
                count, period = q.rate
                # Starts are counted at claim (or when known, for a job sent ahead); a job
                # reaches its worker a few ms later, so the window is a little longer than the
                # period and the limit also holds for the starts tasks see.
                period += min(RATE_MARGIN, period * 0.1)
                self.cursor.execute(sql.RATE_FORGET, (q.name, now - period))
                self.cursor.execute(sql.RATE_CLAMP, (q.name, now))
                used, oldest = self.cursor.execute(
                    sql.RATE_WINDOW, (q.name, now - period)).fetchone() or (0, None)
                if used >= count:
                    cap = 0
                    self._slot(q.name, _soonest(oldest, now) + period, now)
                else:
                    cap = min(cap, count - used)
            if cap <= 0:
                continue
            caps[q.name] = cap
            candidates.extend(self._candidates(q.name, now, cap))
        claimed: list[Row] = []
        workers = _Slots(worker_ids, n if ahead_from is None else ahead_from)
        limits = {q.name: q for q in queues}
        more = 0
        parked = 0
        for _ in range(CLAIM_ROUNDS):
            now_parked = self._claim_from(candidates, caps, limits, claimed, n, workers, now,
                                          lease, PARK_PER_CLAIM - parked)
            if not now_parked or len(claimed) == n:
                break
            parked += now_parked
            if parked >= PARK_PER_CLAIM:
                self._slot("", now, now)  # more to park (and maybe to claim): come back now
                break
            # The jobs of full keys took candidate places and are parked now: look again
            # (they are not candidates any more), a few places wider each round so that one
            # round can find several full keys, rather than leave workers idle until the
            # next poll.
            more += 16
            candidates = []
            for name, cap in caps.items():
                if cap > 0:
                    candidates.extend(self._candidates(name, now, cap + more))
            if not candidates:
                break
        # each worker starts its best job, the rest in order (see sent_order)
        claimed.sort(key=best_first)
        steps = [row["id"] for row in claimed if row["workflow"] is not None]
        if steps:  # a workflow step takes its upstream steps' results to its worker
            results = self.step_results(steps)  # type: ignore[attr-defined]
            for row in claimed:
                if row["id"] in results:
                    row["results"] = results[row["id"]]
        return claimed

    def _claim_from(
        self, candidates: list[_Candidate],
        caps: dict[str, int], limits: Mapping[str, QueueLimits], claimed: list[Row], n: int,
        workers: _Slots, now: float, lease: float, park: int,
    ) -> int:
        """Claim from ``candidates``, best first, into ``claimed``; returns how many jobs of
        full concurrency keys it parked (at most about ``park``): when some were, a fresh look
        may find other candidates."""
        candidates.sort()
        held_now: dict[str, int] = {}  # running jobs of each key met, this batch's included
        windows: dict[str, list[Any]] = {}  # [starts, oldest's end] of each rated key met
        parked = 0
        parked_keys: set[str] = set()
        rate_parked: set[str] = set()
        # Jobs with no key are claimed together, one statement per worker, after the loop: a
        # statement per job cost the supervisor more than the rest of a claim (a queue's rate
        # is in its cap already). The others are claimed one by one because each changes what
        # the next may do.
        batch: dict[str, list[int]] = {}
        rated: dict[int, tuple[str, bool]] = {}  # the batch's rated jobs: queue, sent ahead
        starts: dict[str, tuple[list[int], list[int]]] = {}  # rated: (known, not yet known)
        for _, _, job_id, queue, ckey, climit, expires, frate, fperiod in candidates:
            if workers.left == 0:
                break
            if caps[queue] <= 0:
                continue
            ahead = workers.ahead
            if ahead and expires:
                continue  # it would start only after the job before it: maybe not in time
            if ckey is not None:
                taken = held_now.get(ckey)
                if taken is None:  # first of its key in this batch: count the running ones
                    taken = 0 if climit >= UNLIMITED else int(
                        _scalar(self.cursor, sql.COUNT_WITH_KEY, (ckey,)))
                if taken >= climit:
                    held_now[ckey] = taken
                    if ckey not in parked_keys and parked < park:
                        # Park the key's jobs that cannot run now: later claims skip them
                        # without reading them, until a job of the key stops (jobs_unpark).
                        parked_keys.add(ckey)
                        self.cursor.execute(sql.PARK_KEY, (ckey, taken, max(park - parked, 1)))
                        parked += self.cursor.connection.changes()
                    continue
                if frate is not None:
                    window = windows.get(ckey)
                    if window is None:
                        window = windows[ckey] = list(self._flow_used(ckey, frate, fperiod, now))
                    if window[0] >= frate:
                        held_now[ckey] = taken
                        if ckey not in rate_parked and parked < park:
                            # Over its rate: the key's jobs wait, parked, for room in its
                            # window (flowkeys), rather than being read by every claim.
                            rate_parked.add(ckey)
                            parked += self._flow_park(ckey, max(park - parked, 1))
                            self._flow_wait(ckey, window[1], now)
                        continue
                held_now[ckey] = taken + 1
            caps[queue] -= 1
            rate = limits[queue].rate
            if ckey is None:
                batch.setdefault(workers.take(), []).append(job_id)
                if rate is not None:
                    rated[job_id] = (queue, ahead)
                continue
            row = next(map(_claimed, _dicts(self.cursor.execute(
                sql.CLAIM, (workers.take(), now + lease, now, job_id)))), None)
            if row is None:
                continue
            claimed.append(row)
            if ahead:
                row["unknown_start"] = ((QUEUE_RATED if rate is not None else 0)
                                        | (FLOW_RATED if frate is not None else 0))
            if frate is not None:
                assert ckey is not None
                until = self._flow_start(ckey, fperiod, now, job_id if ahead else None)
                window = windows[ckey]
                window[0] += 1
                window[1] = min(window[1], until) if window[0] > 1 else until
                if window[0] >= frate:  # full: the key's parked jobs come back at its end
                    self._flow_wait(ckey, window[1], now)
            if rate is not None:
                starts.setdefault(queue, ([], []))[1 if ahead else 0].append(job_id)
        for worker, ids in batch.items():
            rows = list(map(_claimed, _dicts(self.cursor.execute(
                sql.CLAIM_MANY, (worker, now + lease, now, _id_list(ids))))))
            claimed.extend(rows)
            if rated:
                for row in rows:
                    job = rated.get(row["id"])
                    if job is not None:
                        if job[1]:
                            row["unknown_start"] = QUEUE_RATED
                        starts.setdefault(job[0], ([], []))[1 if job[1] else 0].append(row["id"])
        self._rate_starts(starts, limits, caps, now)
        return parked

    def _candidates(self, queue: str, now: float, limit: int) -> list[_Candidate]:
        """The best ``limit`` claimable jobs of a queue (keys already at their limit and
        expired jobs left out), as sortable tuples."""
        return [(-priority, run_at, job_id, queue, ckey, climit or 1, bool(expires), frate,
                 fperiod or 0.0)
                for job_id, priority, run_at, ckey, climit, expires, frate, fperiod
                in self.cursor.execute(sql.CLAIM_CANDIDATES, (queue, now, limit))]

    def adopt_orphan_queues(self) -> int:
        """Give every queue with queued jobs a row (for listings and stats: claims find the
        queues with queued jobs from the jobs themselves)."""
        self.cursor.execute(sql.ADOPT_QUEUES)
        return self.cursor.connection.changes()

    def expire_due(self, now: float, limit: int = 500) -> int:
        """Cancel (reason "expired") pending jobs not started by their ``expires_at``; returns
        how many. Also fails tokens past their timeout, forgets flow keys' starts that left
        their window and runs ``unpark_free`` (the supervisor calls this once a poll)."""
        self.cursor.execute(sql.EXPIRE_DUE, (now, now, limit))
        expired = self.cursor.connection.changes()
        # the safety net under record_starts/unclaim: a start never reported whose job no longer
        # runs (cancelled while sent ahead, its supervisor rescued) is counted from now
        self.cursor.execute(sql.RATE_LEFT, (now,))
        self.expire_tokens(now, limit)  # type: ignore[attr-defined]  # (WorkflowsTxMixin)
        self._flow_forget(now)
        self.unpark_free()
        return expired

    def unpark_free(self) -> int:
        """Give each concurrency key with parked jobs and a free slot its best parked job that
        fits back to the claims. The trigger ``jobs_unpark`` does this as slots come free; this
        catches a slot whose job given back could not be claimed (its queue paused, or served
        by no supervisor) and would otherwise keep the key's other jobs waiting."""
        self.cursor.execute(sql.UNPARK_FREE)
        return self.cursor.connection.changes()

    def promote_due(self, now: float, limit: int = 1000) -> int:
        self.cursor.execute(sql.PROMOTE_DUE, (now, limit))
        return self.cursor.connection.changes()

    def unclaim(self, job_id: int, attempt: int) -> bool:
        """Return a claimed job that never reached its worker's hands (it waited in a dead or
        stopped worker's backlog) to queued, taking back the attempt number. Safe because only
        the supervisor that claimed it records its outcomes, and it has let go of it."""
        self.cursor.execute(sql.UNCLAIM, (job_id, attempt))
        if self.cursor.connection.changes() != 1:
            return False
        # it never started: a start counted for it (not yet known) is no start
        self.cursor.execute(sql.RATE_UNCLAIMED, (job_id,))
        self.cursor.execute(FLOW_UNCLAIMED, (job_id,))
        return True
