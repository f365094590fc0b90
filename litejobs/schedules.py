"""Cron entries made at run time: ``app.schedule``, ``app.unschedule``, ``app.schedules``.

A stored entry lives in the database's ``schedules`` table, beside the entries of litejobs.toml
and ``@app.cron``; every supervisor's ticker serves it with the same exactly-once and DST rules
(they share ``cron_entries``/``cron_fires``). It is validated exactly as a ``[cron.NAME]``
table is, and refused before anything is written; its name may not be one a litejobs.toml or
``@app.cron`` entry of this app has. Its task need not be registered in this process (a web
process that enqueues by name); the supervisor logs an entry whose task it does not know.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litejobs.cron import STORED, CronEntry, entry_from_spec
from litejobs.errors import ScheduleClash
from litejobs.job import iso
from litejobs.validate import check_name

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.store.rows import Row

__all__ = ["entry_from_row", "entry_view", "known_entries", "schedule", "schedules",
           "unschedule"]


def _clash(app: App, name: str, removing: bool) -> ScheduleClash:
    source = app.cron_specs[name].source
    where = ("an @app.cron decorator in the app's code" if source == "@app.cron"
             else f"[cron.{name}] in {source}")
    if removing:
        return ScheduleClash(f"cron entry {name!r} is declared by {where}, not stored; "
                             "remove it there (edit the file, or drop the decorator)")
    return ScheduleClash(f"cron entry {name!r} is declared by {where}; a stored entry cannot "
                         "take its name: change it there, or store this one under another "
                         "name")


def schedule(app: App, name: str, schedule: str, task: str, args: Sequence[Any] = (),
             kwargs: Mapping[str, Any] | None = None, timezone: str = "UTC",
             **options: Any) -> dict[str, Any]:
    """Store (or replace) the cron entry ``name``; returns it as ``litejobs cron list --json``
    shows it. ``ValueError`` (one line) for an invalid entry, ``ScheduleClash`` for the name
    of a litejobs.toml or ``@app.cron`` entry; nothing is written then."""
    check_name("cron entry name", name)
    if name in app.cron_specs:
        raise _clash(app, name, removing=False)
    kwargs = {} if kwargs is None else kwargs
    entry = entry_from_spec(name, schedule, task, timezone, args, kwargs, options, STORED)
    now = app.clock()  # a test's Clock, when one is attached
    check_job(app, entry, now)
    row = {"name": name, "schedule": entry.schedule.expression, "task": task,
           "args": json.dumps(list(entry.args), allow_nan=False),
           "kwargs": json.dumps(dict(entry.kwargs), allow_nan=False),
           "timezone": timezone,
           "options": json.dumps(dict(sorted(options.items())), allow_nan=False)}
    app.store.put_schedule(row, entry.key, now)
    state = {r["name"]: r for r in app.store.cron_entries()}.get(name)
    return entry_view(entry, state, datetime.fromtimestamp(now, UTC))


def unschedule(app: App, name: str) -> bool:
    """Remove the stored entry ``name`` (an instant not yet fired does not fire); False when
    there is none. ``ScheduleClash`` for a litejobs.toml or ``@app.cron`` entry."""
    check_name("cron entry name", name)
    if app.store.delete_schedule(name):
        return True
    if name in app.cron_specs:
        raise _clash(app, name, removing=True)
    return False


def schedules(app: App) -> list[dict[str, Any]]:
    """Every cron entry of the app and the database, with its source ("toml", "decorator",
    "stored"), as ``litejobs cron list --json`` shows it."""
    states = {r["name"]: r for r in app.store.cron_entries()}
    now = datetime.now(UTC)
    # (not checking tasks: a producer need not import them all to list the entries)
    return [entry_view(e, states.get(e.name), now)
            for e in known_entries(app, check_tasks=False)]


def known_entries(app: App, check_tasks: bool = True, stored: bool = True,
                  ) -> list[CronEntry]:
    """The app's litejobs.toml and ``@app.cron`` entries (validated; with ``check_tasks``, an
    unknown task is refused as at start), then (with ``stored``) the stored ones whose names
    they leave free, by name."""
    from litejobs.ticker import build_entries

    if check_tasks:
        static = build_entries(app)
    else:
        static = [entry_from_spec(s.name, s.schedule, s.task, s.timezone, s.args, s.kwargs,
                                  s.options, s.source) for s in app.cron_specs.values()]
    found = []
    for row in app.store.schedules() if stored else ():
        if row["name"] in app.cron_specs:
            continue
        try:
            found.append(entry_from_row(row))
        except ValueError:
            continue  # written by something that skipped validation: the supervisor logs it
    return static + found


def entry_from_row(row: Row) -> CronEntry:
    """The entry a ``schedules`` row holds, validated again (ValueError when it is not)."""
    try:
        args, kwargs, options = (json.loads(row[k]) for k in ("args", "kwargs", "options"))
    except ValueError as exc:
        raise ValueError(f"cron entry {row['name']!r} ({STORED}): its stored JSON is not "
                         f"valid ({exc}); store it again") from None
    if not isinstance(options, dict):
        raise ValueError(f"cron entry {row['name']!r} ({STORED}): its options are not a JSON "
                         "object; store it again")
    return entry_from_spec(row["name"], row["schedule"], row["task"], row["timezone"], args,
                           kwargs, options, STORED)


def check_job(app: App, entry: CronEntry, now: float) -> None:
    """Build the job a fire of ``entry`` enqueues (the task's options when this process has
    it, the payload cap): ValueError naming the entry when it cannot be built."""
    from litejobs.ticker import entry_job

    try:
        entry_job(app, entry, now, now)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cron entry {entry.name!r} ({entry.source}): {exc}") from None


def entry_view(entry: CronEntry, state: Row | None, now: datetime) -> dict[str, Any]:
    """One entry as ``cron list --json`` shows it: settings, source, next three fires (ISO
    8601, UTC) and its last fire with that job's state."""
    state = state or {}
    return {
        "name": entry.name, "source": entry.kind, "schedule": entry.schedule.expression,
        "timezone": entry.schedule.timezone, "task": entry.task, "args": list(entry.args),
        "kwargs": dict(entry.kwargs), "queue": entry.queue, "priority": entry.priority,
        "misfire": entry.misfire, "catchup": entry.catchup, "overlap": entry.overlap,
        "next": [i.isoformat() for i in itertools.islice(entry.schedule.instants(now), 3)],
        "last_fire": iso(state.get("last_instant")), "last_job": state.get("last_job"),
        "last_job_state": state.get("last_state"),
    }
