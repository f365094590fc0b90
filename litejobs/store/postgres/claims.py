"""The PostgreSQL store's claims, and the statements that make jobs ready for one.

A claim is one statement (``sql.CLAIM``): each queue's best claimable jobs, locked with
``FOR UPDATE SKIP LOCKED`` so that claimers on other hosts pass over them instead of waiting,
then the best of all handed one per worker. A queue with a concurrency or rate limit has its
row in ``queues`` locked first (``FOR UPDATE``, in name order): its running jobs and its rate
window's starts (``rate_starts``, on the server's clock) are counted under that lock, so both
limits are exact across every claimer, whatever host it runs on. Jobs with a concurrency key
are picked first, each key under an advisory lock that is never waited for (``_keyed``), and
join the same statement, so priorities hold between them and the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.claims import FLOW_RATED, QUEUE_RATED, RATE_MARGIN, best_first
from litejobs.store.flowkeys import flow_window
from litejobs.store.postgres import sql
from litejobs.store.postgres.parking import PgParkingMixin
from litejobs.store.postgres.ratestarts import PgRateStartsMixin
from litejobs.store.rows import QueueLimits, Row

if TYPE_CHECKING:
    import psycopg

__all__ = ["KEY_ROUNDS", "PgClaimsMixin"]

#: Most looks for keyed candidates one claim takes (each past the keys found full or held).
KEY_ROUNDS = 4
#: ... and most while each look finds keys over their rate (their jobs parked as it goes),
#: each look twice as wide as the last, up to ``KEY_LOOK_MOST`` jobs.
KEY_ROUNDS_PARKING = 12
KEY_LOOK_MOST = 1000


def _first(cursor: psycopg.Cursor[Any]) -> Row:
    row: Row | None = cursor.fetchone()
    assert row is not None
    return row


class PgClaimsMixin(PgRateStartsMixin, PgParkingMixin):
    """``PgTx``'s claim statements (the ``ClaimTx`` protocol)."""

    conn: psycopg.Connection[Any]
    next_slot: float | None
    #: Queues this transaction's ``queues()`` saw with no queued job of a concurrency key:
    #: a claim of only those skips the keyed look (one round trip a cycle fewer).
    _keyless: set[str]

    if TYPE_CHECKING:
        def _know_queues(self, queues: Iterable[str]) -> None: ...  # (PgInsertsMixin)

        def step_results(self, ids: Sequence[int]) -> dict[int, str]: ...  # (PgFlowsMixin)

        def expire_tokens(self, now: float, limit: int = 500) -> int: ...  # (PgFlowsMixin)

    def queues(self) -> list[tuple[str, bool]]:
        """Every queue with queued jobs, and every paused one, with its paused flag."""
        names: set[str] = set()
        paused: set[str] = set()
        keyless: set[str] = set()
        for row in self.conn.execute(sql.QUEUES_TO_VISIT):
            (paused if row["paused"] else names).add(str(row["name"]))
            if not row["paused"] and not row["keyed"]:
                keyless.add(str(row["name"]))
        # A keyed job committed after this read waits for the next cycle, as one committed
        # just after the claim would.
        self._keyless = keyless
        return [(name, name in paused) for name in sorted(names | paused)]

    def claim(self, worker_ids: Sequence[str], queues: Iterable[QueueLimits], now: float,
              lease: float, ahead_from: int | None = None) -> list[Row]:
        """Claim up to ``len(worker_ids)`` queued jobs of ``queues``, best first, one per
        worker, each with its attempt number bumped and a lease of ``lease`` seconds on the
        server's clock (expiry and rate windows are judged on the server's clock too).

        A queue's concurrency and rate limits hold across every claimer: its row is locked
        before its running jobs and its window's starts are counted. ``self.next_slot`` is set
        to the moment (on the caller's clock: ``now`` plus the server's wait) a rate-limited
        queue whose window is full gets its next slot. ``worker_ids[ahead_from:]`` are places
        behind a running job: a job with an expiry only goes to the places before it, which
        start at once. A rated job (of a rate-limited queue, or with a rated flow key) sent
        ahead has its start counted as not yet known (``ratestarts``) and its row says so
        (``unknown_start``: ``QUEUE_RATED | FLOW_RATED``), as the SQLite store's claim.
        """
        self.next_slot = None
        n = len(worker_ids)
        if n == 0:
            return []
        queues = list(queues)
        caps = {q.name: n for q in queues}
        rated = {q.name: q.rate for q in queues if q.rate is not None}
        limited = sorted({q.name for q in queues if q.concurrency is not None} | set(rated))
        if limited:
            conn = self.conn
            self._know_queues(limited)  # a row to lock
            conn.execute(sql.LOCK_QUEUES, (limited,))
            running = {r["queue"]: int(r["n"])
                       for r in conn.execute(sql.RUNNING_BY_QUEUE, (limited,))}
            for q in queues:
                if q.concurrency is not None:
                    caps[q.name] = min(caps[q.name], q.concurrency - running.get(q.name, 0))
            for name, (count, period) in rated.items():
                if caps[name] > 0:
                    caps[name] = min(caps[name], count - self._window(name, count, period, now))
        front = n if ahead_from is None else max(0, min(n, ahead_from))
        claimed: list[Row] = []
        starts: tuple[list[str], list[int | None]] = ([], [])  # rated: queue, id if ahead
        for ahead, workers in ((False, worker_ids[:front]), (True, worker_ids[front:])):
            open_caps = {name: cap for name, cap in caps.items() if cap > 0}
            if not workers or not open_caps:
                continue
            flow_picks: dict[int, tuple[str, float]] = {}  # rated keyed picks: (key, period)
            keyed = ([] if self._keyless.issuperset(open_caps)
                     else self._keyed(open_caps, ahead, len(workers), now, flow_picks))
            statement, picks = (sql.CLAIM_KEYED, [keyed]) if keyed else (sql.CLAIM, [])
            rows = self.conn.execute(statement, (
                list(open_caps), list(open_caps.values()), ahead, *picks, list(workers),
                list(workers), float(lease))).fetchall()
            for row in rows:
                caps[row["queue"]] -= 1
                if row["queue"] in rated:
                    starts[0].append(row["queue"])
                    starts[1].append(row["id"] if ahead else None)
                if ahead and (row["queue"] in rated or row["id"] in flow_picks):
                    # sent ahead: its start is not yet known; the supervisor reports it
                    row["unknown_start"] = ((QUEUE_RATED if row["queue"] in rated else 0)
                                            | (FLOW_RATED if row["id"] in flow_picks else 0))
            # written before the places ahead are claimed: their keys' windows count these
            self._flow_started([(*flow_picks[row["id"]], row["id"] if ahead else None)
                                for row in rows if row["id"] in flow_picks])
            claimed.extend(rows)
            if len(rows) < len(workers):
                # Short: nothing more is claimable now (a place ahead takes no job a place in
                # front would not), so the places ahead cost no round trip.
                break
        if starts[0]:
            self.conn.execute(sql.RATE_START, starts)
            for name in set(starts[0]):
                if caps[name] == 0:  # maybe full now: when its oldest start leaves the window
                    self._window(name, *rated[name], now)
        claimed.sort(key=best_first)
        steps = [row["id"] for row in claimed if row["workflow"] is not None]
        if steps:  # a workflow step takes its upstream steps' results to its worker
            results = self.step_results(steps)
            for row in claimed:
                if row["id"] in results:
                    row["results"] = results[row["id"]]
        return claimed

    def _keyed(self, caps: Mapping[str, int], ahead: bool, n: int, now: float = 0.0,
               flow_picks: dict[int, tuple[str, float]] | None = None) -> list[int]:
        """The jobs with a concurrency key this claim may take (at most ``n``, within
        ``caps``), locked, best first: each key's running jobs are counted under the key's
        advisory lock, so a key's limit is exact across claimers. A key another claimer
        holds is passed over; a full key's jobs are parked (``parking``: later claims skip them
        until a slot of the key comes free) and looked past, a few rounds, so that a full
        key's backlog does not hide the other keys' jobs. A key's rate (flowkeys) is
        counted under the same lock; its rated picks go in ``flow_picks``."""
        # keys whose rate window has room again, then keys whose slot came free: their best
        # parked jobs are candidates
        self._unpark_soon(self._flow_waits_due(now))
        # rated keys held: (seconds until their window has room, found over their rate: its
        # jobs parked; else filled by this claim: the wait alone written)
        waits: dict[str, tuple[float, bool]] = {}
        picked = self._keyed_rounds(caps, ahead, n, now, flow_picks, set(), waits)
        self._flow_park(waits)
        return picked

    def _keyed_rounds(self, caps: Mapping[str, int], ahead: bool, n: int, now: float,
                      flow_picks: dict[int, tuple[str, float]] | None, parked: set[str],
                      waits: dict[str, tuple[float, bool]]) -> list[int]:
        conn = self.conn
        picked: list[int] = []
        room: dict[str, int] = {}  # running jobs (this claim's picks included) per key held
        passed: set[str] = set()  # full, or held by another claimer
        left = dict(caps)
        flows: dict[str, tuple[int, float | None]] = {}  # rated keys held: (starts, wait)
        limit, parking = n * 4, False
        for round_ in range(KEY_ROUNDS_PARKING):
            if round_ >= KEY_ROUNDS and not parking:
                break
            before = len(passed)
            rows = conn.execute(sql.KEYED_CANDIDATES, (
                list(caps), ahead, sorted(passed), limit)).fetchall()
            if not rows:
                break
            new = sorted({r["ckey"] for r in rows} - room.keys() - passed)
            held = (sorted(str(r["key"]) for r in conn.execute(sql.LOCK_CKEYS, (new,)))
                    if new else [])
            passed.update(set(new) - set(held))
            if held:
                running = {r["ckey"]: int(r["n"])
                           for r in conn.execute(sql.RUNNING_WITH_KEYS, (held,))}
                room.update({k: running.get(k, 0) for k in held})
                flows.update(self._flow_used(
                    {r["ckey"] for r in rows if r["frate"] is not None and r["ckey"] in held},
                    now))
            for r in rows:
                key = r["ckey"]
                if key in passed or left[r["queue"]] <= 0:
                    continue
                if room[key] >= r["climit"]:
                    passed.add(key)
                    if key not in parked:  # under its lock: later claims skip its jobs
                        parked.add(key)
                        self._park(key, room[key])
                    continue
                if r["frate"] is not None:
                    if key not in flows:  # held in an earlier round, for unrated jobs
                        flows.update(self._flow_used([key], now))
                    used, wait = flows[key]
                    window = flow_window(float(r["fperiod"]))
                    if used >= r["frate"]:
                        passed.add(key)
                        # (no start of known time: none leaves before a window from now)
                        waits[key] = (window if wait is None else wait, True)
                        self._flow_full(waits[key][0], now)
                        continue
                    # (no start of known time before: this one is the first to leave, or,
                    # sent ahead, none leaves sooner than a window from now)
                    flows[key] = (used + 1, window if wait is None else min(wait, window))
                    if used + 1 >= r["frate"]:  # filled: its parked jobs wait for room
                        waits[key] = (flows[key][1] or 0.0, False)
                    if flow_picks is not None:
                        flow_picks[int(r["id"])] = (key, float(r["fperiod"]))
                room[key] += 1
                left[r["queue"]] -= 1
                picked.append(int(r["id"]))
                if len(picked) == n:
                    return picked
            over = {k: w for k, w in waits.items() if w[1]}
            if over:
                # Parked now, so the next look reads past them; while looks keep finding keys
                # over their rate (a long run of blocked keys' jobs), more and wider looks
                # reach the jobs behind them in this claim, not one poll later.
                self._flow_park(over)
                for k in over:
                    del waits[k]
                limit = min(limit * 2, KEY_LOOK_MOST)
            parking = bool(over)
            if len(passed) == before:
                break  # a new look would find the same jobs
        return picked

    def _window(self, queue: str, count: int, period: float, now: float) -> int:
        """How many starts a rate-limited queue's window holds; when it is full, sets
        ``next_slot`` to when its oldest start leaves it (on the caller's clock)."""
        # The window is a little longer than the period, as the SQLite store's: a job
        # reaches its worker a few ms after its claim.
        period += min(RATE_MARGIN, period * 0.1)
        self.conn.execute(sql.RATE_FORGET, (queue, float(period)))
        self.conn.execute(sql.RATE_CLAMP, (queue,))
        window = self.conn.execute(sql.RATE_WINDOW, (queue, float(period))).fetchone()
        assert window is not None
        used = int(window["used"])
        if used >= count:
            wait = max(0.0, (window["oldest"] or window["now"]) + period - window["now"])
            if self.next_slot is None or now + wait < self.next_slot:
                self.next_slot = now + wait
        return used

    def unclaim(self, job_id: int, attempt: int) -> bool:
        """Return a claimed job that never reached its worker to queued, taking back the
        attempt number; a start counted for it, not yet known, goes with it."""
        return int(_first(self.conn.execute(sql.UNCLAIM, (job_id, attempt)))["n"]) == 1

    def adopt_orphan_queues(self) -> int:
        """Give every queue with queued jobs a row."""
        return self.conn.execute(sql.ADOPT_QUEUES).rowcount

    def expire_due(self, now: float, limit: int = 500) -> int:
        """Cancel (reason "expired") pending jobs not started by their ``expires_at`` on the
        server's clock; returns how many."""
        expired = self.conn.execute(sql.EXPIRE_DUE, (limit,)).rowcount
        # as the SQLite store's: tokens past their timeout, flow keys' starts that left, and
        # keys' parked jobs whose slot came free (a claim of keyed jobs does it too)
        self.expire_tokens(now, limit)
        self._flow_forget()
        self.unpark_free()
        return expired

    def promote_due(self, now: float, limit: int = 1000) -> int:
        """Queue the scheduled jobs whose run time has come on the server's clock."""
        return self.conn.execute(sql.PROMOTE_DUE, (limit,)).rowcount
