"""The cron ticker: ``run_once(now)`` fires every due instant of every entry exactly once.

Each fire writes a unique ``(entry, instant)`` row in the same transaction as its job, so an
instant never makes two jobs — across restarts, a crash mid-fire, and several supervisors on
one file. The supervisor's loop only reads the clock and sleeps until ``next_instant``.

Missed instants (the supervisor was down, or the clock jumped forward) follow the entry's
``misfire`` policy; a fire while the entry's previous job is still pending or running follows
its ``overlap`` policy. Both are recorded in ``cron_fires`` and logged. Only instants within
``catchup`` of now are looked at (no policy fires an older one), at most ``CAP`` an entry a
tick: a per-second entry after a month down costs one bounded pass, not a walk of every second.
With ``overlap = "queue"`` an owed instant waits for the previous job: ``owed`` names the jobs
whose end should make the supervisor tick again at once.

Entries stored at run time (``app.schedule``; ``litejobs.schedules``) are served beside the
TOML and decorator ones: ``refresh`` compares a cheap fingerprint of the ``schedules`` table at
most once a second and reads the rows only when it changed; each fire transaction reads the
stored entries' stamps again, so an entry removed or changed before an instant's transaction
does not fire its old self (the ticker reloads at once instead).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litejobs.calls import named_call
from litejobs.cron import STORED, CronEntry, entry_from_spec
from litejobs.newjob import NewJob
from litejobs.store import Row, Store, Tx
from litejobs.task import CallOptions

if TYPE_CHECKING:
    from litejobs.app import App, CronSpec

__all__ = ["ON_TIME", "RELOAD_EVERY", "TickResult", "Ticker", "build_entries", "entry_job"]

log = logging.getLogger("litejobs")

#: An instant the ticker reaches more than this many seconds late counts as missed for
#: ``misfire = "skip"`` (``catchup`` bounds "latest" and "all").
ON_TIME = 60.0
#: Instants an entry handles in one tick at most (the newest kept).
CAP = 1000
ACTIVE = frozenset({"scheduled", "queued", "running"})
#: Seconds between two looks at whether the stored entries changed.
RELOAD_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class TickResult:
    fired: int = 0
    skipped: int = 0


def build_entries(app: App, specs: Mapping[str, CronSpec] | None = None) -> list[CronEntry]:
    """Validate the app's cron specs; ``ValueError`` names the entry, its source and the
    problem (unknown task included)."""
    out: list[CronEntry] = []
    for spec in (specs if specs is not None else app.cron_specs).values():
        entry = entry_from_spec(spec.name, spec.schedule, spec.task, spec.timezone, spec.args,
                                spec.kwargs, spec.options, spec.source)
        if spec.task not in app.tasks:
            raise ValueError(
                f"cron entry {spec.name!r} ({spec.source}): unknown task {spec.task!r}; the app "
                f"has: {', '.join(sorted(app.tasks)) or 'no tasks'}")
        out.append(entry)
    return out


class Ticker:
    """Fires the instants of ``entries`` and of the entries stored in ``store``, building jobs
    with ``app``."""

    def __init__(self, app: App, store: Store, entries: Sequence[CronEntry]) -> None:
        self.app = app
        self.store = store
        #: job id -> entry: previous jobs of ``overlap = "queue"`` entries that owe a fire
        self.owed: dict[int, str] = {}
        #: entry -> (its schedule, when this process began firing it)
        self.since: dict[str, tuple[str, float]] = {}
        #: the litejobs.toml and @app.cron entries; then those and the stored ones
        self.static: list[CronEntry] = []
        self.entries: list[CronEntry] = []
        #: stored entry -> (the entry, its row's updated_at)
        self.stored: dict[str, tuple[CronEntry, float]] = {}
        #: monotonic time of the next look at the schedules table (0: at the next turn)
        self.reload_at = 0.0
        self._mark: tuple[int, float | None, float] | None = None
        self._told: dict[str, float] = {}  # stored entries already logged as unusable
        now = time.time()
        for e in entries:
            try:
                self.job_for(e, now, now)
            except (TypeError, ValueError) as exc:
                # `check` refuses such an entry; this keeps one that slipped through (a
                # TOML edited after the check) from stopping every other entry's fires
                log.error("cron %s (%s) cannot fire: %s; it is left out until fixed",
                          e.name, e.source, exc)
                continue
            self.static.append(e)
        self.entries = list(self.static)

    def job_for(self, entry: CronEntry, instant: float, now: float) -> NewJob:
        """The job an entry's fire at ``instant`` enqueues (its scheduled_at is the instant)."""
        return entry_job(self.app, entry, instant, now)

    def refresh(self, mono: float | None = None) -> bool:
        """Pick up stored entries added, changed or removed; True when the set changed. With
        ``mono`` (the supervisor's loop), it looks at most once per ``RELOAD_EVERY``."""
        if mono is not None and mono < self.reload_at:
            return False
        self.reload_at = (time.monotonic() if mono is None else mono) + RELOAD_EVERY
        mark = self.store.schedules_mark()
        if mark == self._mark:
            return False
        rows = self.store.schedules()
        self._mark = mark
        taken = {e.name for e in self.static}
        stored: dict[str, tuple[CronEntry, float]] = {}
        now = time.time()
        for row in rows:
            name, stamp = row["name"], float(row["updated_at"])
            old = self.stored.get(name)
            if old is not None and old[1] == stamp:
                stored[name] = old
                continue
            problem = self._unusable(row, taken, now)
            if isinstance(problem, str):
                if self._told.get(name) != stamp:
                    self._told[name] = stamp
                    log.error("%s; it is left out until fixed (litejobs cron add %s ... "
                              "replaces it, litejobs cron remove %s removes it)", problem,
                              name, name)
                continue
            log.info("cron %s (stored): %s: %s (%s) -> %s", name,
                     "changed" if old else "added", problem.schedule.expression,
                     problem.schedule.timezone, problem.task)
            stored[name] = (problem, stamp)
        for name in self.stored.keys() - stored.keys():
            log.info("cron %s (stored): removed", name)
        changed = {k: v[1] for k, v in stored.items()} != {
            k: v[1] for k, v in self.stored.items()}
        self.stored = stored
        self.entries = self.static + [e for e, _ in stored.values()]
        return changed

    def _unusable(self, row: Row, taken: set[str], now: float) -> CronEntry | str:
        """The entry a stored row holds, or why this supervisor cannot fire it."""
        from litejobs.schedules import entry_from_row

        name = row["name"]
        if name in taken:
            return (f"cron entry {name!r} (stored) has the name of an entry of litejobs.toml "
                    "or @app.cron, which this supervisor fires instead")
        try:
            entry = entry_from_row(row)
        except ValueError as exc:
            return str(exc)
        if entry.task not in self.app.tasks:
            return (f"cron entry {name!r} (stored): unknown task {entry.task!r}; this "
                    f"supervisor's app has: {', '.join(sorted(self.app.tasks)) or 'no tasks'}")
        try:
            self.job_for(entry, now, now)
        except (TypeError, ValueError) as exc:
            return f"cron entry {name!r} (stored) cannot fire: {exc}"
        return entry

    def next_instant(self, now: float) -> float | None:
        """The earliest instant after ``now`` of any entry (None without entries)."""
        after = datetime.fromtimestamp(now, UTC)
        best: float | None = None
        for entry in self.entries:
            nxt = entry.schedule.next_after(after)
            if nxt is not None and (best is None or nxt.timestamp() < best):
                best = nxt.timestamp()
        return best

    def run_once(self, now: float) -> TickResult:
        """Fire what is due at ``now``, in one write transaction."""
        if self._mark is None:
            self.refresh()
        if not self.entries:
            return TickResult()
        if not self.stored:
            return self.store.write(lambda tx: self._tick(tx, now, {}))
        return self.store.write_with_schedules(lambda tx, stamps: self._tick(tx, now, stamps))

    def _tick(self, tx: Tx, now: float, stamps: Mapping[str, float]) -> TickResult:
        fired = skipped = 0
        self.owed = {}
        now_dt = datetime.fromtimestamp(now, UTC)
        for e in self.entries:
            if e.source == STORED and stamps.get(e.name) != self.stored[e.name][1]:
                # removed or changed since it was read: fire nothing of the old one, read
                # the table again at the next turn
                self.reload_at = 0.0
                continue
            key = e.key
            state = tx.cron_entry(e.name)
            if state is None or state["schedule"] != key:
                mine = self.since.get(e.name)
                if mine is None or mine[0] != key:
                    # A new entry (or a changed schedule) starts now: it owes nothing from
                    # before.
                    tx.cron_reset(e.name, key, now)
                    self.since[e.name] = (key, now)
                    continue
                # Another supervisor on the file has another schedule for this entry (a
                # rolling deploy): this one goes on from when it began instead of starting
                # afresh at every tick, which would let neither ever fire. Each instant still
                # fires once: the (entry, instant) rows are shared.
                tx.cron_reset(e.name, key, mine[1])
                state = {**state, "schedule": key, "since": mine[1]} if state else {
                    "since": mine[1], "last_instant": None, "last_job": None}
            elif e.name not in self.since or self.since[e.name][0] != key:
                self.since[e.name] = (key, state["since"])
            base = max(state["since"], state["last_instant"] or 0.0)
            due = self._due(e, base, now, now_dt)
            if not due:
                continue
            f, s = self._handle(tx, e, state, due, now)
            if f or s:
                tx.figure_cron(e.name, due[0], due[-1], now)  # /metrics, in this transaction
            fired += f
            skipped += s
        return TickResult(fired, skipped)

    @staticmethod
    def _due(e: CronEntry, base: float, now: float, now_dt: datetime) -> list[float]:
        """Instants of ``e`` after ``base`` up to ``now``, bounded: the first ``CAP`` older
        than catchup (recorded as missed), then the ones within catchup (the newest ``CAP``).
        No policy fires an instant older than catchup, so after a long stop the ones between
        are skipped without a row each, instead of walking every one under the write lock."""
        horizon = now - e.catchup
        old: list[float] = []
        if base < horizon:
            for instant in e.schedule.instants(datetime.fromtimestamp(base, UTC)):
                t = instant.timestamp()
                if t >= horizon or t > now:
                    break
                if len(old) == CAP:
                    log.warning("cron %s: skipped every instant from %s to %s (older than its "
                                "catchup of %g s) without recording each", e.name, _iso(t),
                                _iso(horizon), e.catchup)
                    base = horizon - 1e-6  # an instant right at the horizon is within catchup
                    break
                old.append(t)
            else:
                base = horizon
            base = max(base, old[-1] if old else base)
        recent = e.due(datetime.fromtimestamp(base, UTC), now_dt, CAP)
        return old + [d.timestamp() for d in recent]

    def _handle(self, tx: Tx, e: CronEntry, state: Mapping[str, Any], due: list[float],
                now: float) -> tuple[int, int]:
        if e.misfire == "all":
            fire = [d for d in due if now - d <= e.catchup]
        elif e.misfire == "latest":
            fire = due[-1:] if now - due[-1] <= e.catchup else []
        else:
            fire = due[-1:] if now - due[-1] <= min(e.catchup, ON_TIME) else []
        last_job = state["last_job"]
        busy = last_job is not None and tx.job_state(last_job) in ACTIVE
        if busy and e.overlap == "queue":
            self.owed[last_job] = e.name
            return 0, 0  # the instants stay due until the previous job has ended
        if busy and e.overlap == "skip":
            for d in due:
                tx.cron_fire(e.name, d, None, "skipped_overlap", now)
            tx.cron_advance(e.name, due[-1], None)
            log.info("cron %s: skipped %d instant(s) up to %s: its previous job %s is still "
                     "pending or running (overlap = skip)", e.name, len(due), _iso(due[-1]),
                     last_job)
            return 0, len(due)
        if e.overlap == "queue" and fire:
            # One job at a time: later instants wait for this one to end.
            due = [d for d in due if d <= fire[0]]
            fire = fire[:1]
        chosen = set(fire)
        fired_ids: list[int] = []
        missed = 0
        for d in due:
            if d in chosen:
                job_id = tx.cron_fire(e.name, d, self.job_for(e, d, now), "fired", now)
                if job_id is not None:
                    fired_ids.append(job_id)
            else:
                tx.cron_fire(e.name, d, None, "skipped_misfire", now)
                missed += 1
        tx.cron_advance(e.name, due[-1], fired_ids[-1] if fired_ids else None)
        if missed:
            log.warning("cron %s: skipped %d missed instant(s) up to %s (misfire = %s, "
                        "catchup = %g s)", e.name, missed, _iso(due[-1]), e.misfire, e.catchup)
        return len(fired_ids), missed


def entry_job(app: App, entry: CronEntry, instant: float, now: float) -> NewJob:
    """The job ``entry``'s fire at ``instant`` enqueues (its scheduled_at is the instant), with
    the task's options when ``app`` has the task; TypeError/ValueError when it cannot be."""
    prepared = named_call(app, entry.task, entry.args, entry.kwargs,
                          CallOptions(queue=entry.queue, priority=entry.priority))
    return replace(app.build_job(prepared, now), run_at=min(instant, now))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
