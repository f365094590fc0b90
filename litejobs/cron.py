"""Cron entries and their fire instants, with time zones and DST defined exactly.

croniter parses the expression and walks *wall-clock* times (naive, so it does no DST arithmetic
of its own); this module maps each matching wall time to real instants in the entry's zone:

* a wall time that exists once fires at that instant;
* a wall time that does not exist (clocks spring forward) fires once, at the instant the clock
  jumps — merged with any other fire due at that same instant;
* a wall time that exists twice (clocks fall back) fires once, at its first occurrence — except
  in entries whose hour field is ``*``, which fire at every matching instant of real time, so in
  both repeated hours.

Fire instants are therefore distinct and strictly increasing (croniter alone double-fires
repeated wall times and misplaces skipped ones).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litejobs.validate import check_call_json, check_name, check_priority, check_seconds

__all__ = ["DECORATOR", "MISFIRE", "OVERLAP", "STORED", "CronEntry", "CronEntryError", "Schedule",
           "entry_from_spec"]

MISFIRE = ("latest", "skip", "all")
OVERLAP = ("skip", "allow", "queue")
ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
#: How far ahead a schedule is searched for its next fire before it is called one that never
#: fires (a leap-day schedule fires every 4 years, ``0 0 29 2 1`` can wait 28).
HORIZON_YEARS = 30
#: ``CronEntry.source`` of an ``@app.cron`` entry, and of one stored in the database.
DECORATOR = "@app.cron"
STORED = "stored"


class Schedule:
    """A cron expression in a time zone; iterates its fire instants as aware UTC datetimes."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        text = " ".join(expression.split())
        expanded = ALIASES.get(text.lower(), text)
        fields = expanded.split(" ")
        if len(fields) not in (5, 6):
            raise ValueError(f"schedule {expression!r} has {len(fields)} fields; write 5 "
                             "(minute hour day month weekday), 6 (… seconds last), or @hourly, "
                             "@daily, @weekly, @monthly, @yearly")
        # Imported here, not at the top: croniter (and dateutil under it) cost a worker
        # ~20 ms of start-up, and only schedules need it.
        import croniter

        try:
            croniter.croniter(expanded, datetime(2000, 1, 1))
        except (croniter.CroniterBadCronError, ValueError, KeyError) as exc:
            raise ValueError(f"schedule {expression!r} is not a valid cron expression: {exc}"
                             ) from None
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}; use an IANA name like "
                             "'Europe/Berlin' or 'UTC' (install tzdata if the system has no "
                             "zone database)") from None
        self.expression = expression
        self.expanded = expanded
        self.timezone = timezone
        #: Entries whose hour field is ``*`` follow real time through a repeated hour.
        self.hour_star = fields[1] == "*"
        probe = datetime(2001, 1, 1, tzinfo=UTC)
        try:
            self._first_wall(probe)
        except croniter.CroniterBadDateError:
            raise ValueError(f"schedule {expression!r} never fires (no date matches it within "
                             f"{HORIZON_YEARS} years)") from None

    def __repr__(self) -> str:
        return f"Schedule({self.expression!r}, {self.timezone!r})"

    def _first_wall(self, after: datetime) -> datetime:
        import croniter

        it = croniter.croniter(self.expanded,
                               after.astimezone(self.zone).replace(tzinfo=None),
                               max_years_between_matches=HORIZON_YEARS)
        return it.get_next(datetime)

    def _transition(self, lo: datetime, hi: datetime) -> datetime:
        """The first instant in (lo, hi] whose UTC offset is hi's: the clock's jump."""
        target = hi.astimezone(self.zone).utcoffset()
        lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
        while hi_s - lo_s > 1:
            mid = (lo_s + hi_s) // 2
            if datetime.fromtimestamp(mid, self.zone).utcoffset() == target:
                hi_s = mid
            else:
                lo_s = mid
        return datetime.fromtimestamp(hi_s, UTC)

    def _instants(self, wall: datetime) -> tuple[str, list[datetime]]:
        """('once'|'gap'|'twice', instants) for one naive wall time."""
        a = wall.replace(tzinfo=self.zone, fold=0)
        b = wall.replace(tzinfo=self.zone, fold=1)
        ua, ub = a.astimezone(UTC), b.astimezone(UTC)
        if ua == ub:
            return "once", [ua]
        if ua.astimezone(self.zone).replace(tzinfo=None) != wall:
            # fold=0 reads the gap with the old offset (too late), fold=1 with the new one (too
            # early); the jump lies between them.
            return "gap", [self._transition(min(ua, ub), max(ua, ub))]
        return "twice", sorted((ua, ub))

    def instants(self, after: datetime) -> Iterator[datetime]:
        """Fire instants strictly after ``after`` (aware), in increasing order, for ever."""
        after = after.astimezone(UTC)
        start = after
        if self.hour_star:
            # Inside a repeated hour's first pass, the second pass of wall times before
            # ``after`` is still ahead in real time: start the walk before the repeat.
            early = after - timedelta(hours=3)
            if early.astimezone(self.zone).utcoffset() != (
                    after + timedelta(hours=3)).astimezone(self.zone).utcoffset():
                start = early
        import croniter

        it = croniter.croniter(self.expanded, start.astimezone(self.zone).replace(tzinfo=None),
                               max_years_between_matches=HORIZON_YEARS)
        pending: list[datetime] = []  # second occurrences, held until the repeat ends
        last = after
        while True:
            try:
                wall = it.get_next(datetime)
            except croniter.CroniterBadDateError:
                return
            kind, found = self._instants(wall)
            if kind == "twice":
                first, second = found
                if self.hour_star:
                    heapq.heappush(pending, second)
                out = [first]
            else:
                # Leaving a repeated hour: its second pass happened before this instant.
                out = [heapq.heappop(pending) for _ in range(len(pending))] + found
            for instant in out:
                if instant > last:
                    last = instant
                    yield instant

    def next_after(self, after: datetime) -> datetime | None:
        return next(self.instants(after), None)


@dataclass(frozen=True, slots=True)
class CronEntry:
    """A validated cron entry: what to enqueue, when, and what to do about misses and overlap."""

    name: str
    schedule: Schedule
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    misfire: str = "latest"
    catchup: float = 3600.0
    overlap: str = "skip"
    source: str = "@app.cron"

    @property
    def key(self) -> str:
        """The schedule as ``cron_entries`` records it: a different key is a changed schedule,
        whose history starts afresh."""
        return f"{self.schedule.expanded} {self.schedule.timezone}"

    @property
    def kind(self) -> str:
        """Where the entry comes from: "decorator" (``@app.cron``), "stored" (``app.schedule``,
        ``litejobs cron add``, the HTTP API) or "toml" (a ``[cron.NAME]`` table)."""
        return {DECORATOR: "decorator", STORED: "stored"}.get(self.source, "toml")

    def due(self, after: datetime, now: datetime, cap: int = 1000) -> list[datetime]:
        """Instants in (after, now], oldest first (at most ``cap``, the newest kept)."""
        out: list[datetime] = []
        for instant in self.schedule.instants(after):
            if instant > now:
                break
            out.append(instant)
            if len(out) > cap:
                out.pop(0)
        return out


_OPTION_KEYS = {"queue", "priority", "misfire", "catchup", "overlap"}


class CronEntryError(ValueError):
    """An invalid cron entry; ``key`` is the setting at fault (for a config file's line)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def entry_from_spec(name: str, schedule: str, task: str, timezone: str, args: Sequence[Any],
                    kwargs: Mapping[str, Any], options: Mapping[str, Any],
                    source: str = "@app.cron") -> CronEntry:
    """Validate one entry, its arguments and options included (so a bad one is refused by
    ``check`` and at start, never at its first fire); ``CronEntryError`` (a ValueError) names
    the entry, the key and the problem."""
    where = f"cron entry {name!r} ({source})"

    def bad(key: str, problem: str) -> CronEntryError:
        return CronEntryError(f"{where}: {problem}", key)

    try:
        check_name("cron entry name", name)
        check_name("task name", task)
    except ValueError as exc:
        raise bad("task", str(exc)) from None
    if not isinstance(schedule, str):
        raise bad("schedule", f"schedule must be a string like '0 7 * * *', not {schedule!r}")
    if not isinstance(timezone, str):
        raise bad("timezone", f"timezone must be a string like 'Europe/Berlin', not "
                  f"{timezone!r}")
    try:
        sched = Schedule(schedule, timezone)
    except ValueError as exc:
        raise bad("timezone" if "time zone" in str(exc) else "schedule", str(exc)) from None
    unknown = set(options) - _OPTION_KEYS
    if unknown:
        raise bad(sorted(unknown)[0], f"unknown option(s) {', '.join(sorted(unknown))}; "
                  f"known: {', '.join(sorted(_OPTION_KEYS))}")
    misfire = options.get("misfire", "latest")
    if misfire not in MISFIRE:
        raise bad("misfire", f"misfire must be one of {', '.join(MISFIRE)}, not {misfire!r}")
    overlap = options.get("overlap", "skip")
    if overlap not in OVERLAP:
        raise bad("overlap", f"overlap must be one of {', '.join(OVERLAP)}, not {overlap!r}")
    try:
        catchup = check_seconds("catchup", options.get("catchup", 3600))
    except ValueError as exc:
        raise bad("catchup", str(exc)) from None
    why = check_call_json(args, kwargs)
    if why is not None:
        raise bad("kwargs" if why.startswith("kwargs") else "args",
                  f"{why}; cron arguments must be JSON values (str, int, float, bool, list, "
                  "table; no dates, NaN or infinity)")
    priority = options.get("priority")
    if priority is not None:
        try:
            check_priority(priority)
        except ValueError as exc:
            raise bad("priority", str(exc)) from None
    queue = options.get("queue")
    if queue is not None:
        try:
            check_name("queue", queue)
        except ValueError as exc:
            raise bad("queue", str(exc)) from None
    return CronEntry(name, sched, task, tuple(args), dict(kwargs), queue, priority, misfire,
                     catchup, overlap, source)
