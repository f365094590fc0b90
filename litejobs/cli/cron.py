"""``litejobs cron``: list the entries, trigger one now, show upcoming fires."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import click

from litejobs.cli.common import Context, common_options, errors, fail, json_option
from litejobs.cron import CronEntry
from litejobs.job import iso
from litejobs.store import Store
from litejobs.ticker import build_entries

__all__ = ["cron"]


@click.group()
def cron() -> None:
    """Cron entries: list them, trigger one now, show upcoming fire times."""


def _entry(ctx: Context, name: str) -> CronEntry:
    for entry in build_entries(ctx.app()):
        if entry.name == name:
            return entry
    names = ", ".join(sorted(ctx.app().cron_specs)) or "none"
    raise fail(f"no cron entry named {name!r}; the app has: {names}")


@cron.command("list")
@common_options
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@json_option
@errors
def cron_list(config_path: str | None, database: str | None, app_spec: str | None,
              as_json: bool) -> None:
    """Every cron entry: schedule, zone, policies, next fires, last fire and its job."""
    ctx = Context(config_path, database, app_spec)
    entries = build_entries(ctx.app())
    path = ctx.database(check_app=True)
    stored = {r["name"]: r for r in Store(path, durability=ctx.config.durability).cron_entries()}
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = []
    for e in entries:
        row = stored.get(e.name, {})
        upcoming = list(itertools.islice(e.schedule.instants(now), 3))
        items.append({
            "name": e.name, "schedule": e.schedule.expression, "timezone": e.schedule.timezone,
            "task": e.task, "misfire": e.misfire, "catchup": e.catchup, "overlap": e.overlap,
            "next": [i.isoformat() for i in upcoming],
            "last_fire": iso(row.get("last_instant")),
            "last_job": row.get("last_job"), "last_job_state": row.get("last_state"),
        })
    if as_json:
        click.echo(json.dumps(items))
        return
    if not items:
        click.echo("no cron entries")
        return
    for it in items:
        click.echo(f"{it['name']}: {it['schedule']} ({it['timezone']}) → {it['task']}  "
                   f"misfire={it['misfire']} overlap={it['overlap']}")
        click.echo(f"    next: {', '.join(it['next']) or 'never'}")
        last = it["last_fire"] or "never"
        job = f" (job {it['last_job']}: {it['last_job_state']})" if it["last_job"] else ""
        click.echo(f"    last fire: {last}{job}")


@cron.command("trigger")
@common_options
@click.argument("name")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@json_option
@errors
def cron_trigger(config_path: str | None, database: str | None, name: str,
                 app_spec: str | None, as_json: bool) -> None:
    """Enqueue a run of entry NAME now, outside its schedule; prints the job id."""
    ctx = Context(config_path, database, app_spec)
    entry = _entry(ctx, name)
    ctx.database(check_app=True)
    app = ctx.app()
    job = app.enqueue(entry.task, list(entry.args), dict(entry.kwargs),
                      **{k: v for k, v in (("queue", entry.queue), ("priority", entry.priority))
                         if v is not None})
    click.echo(json.dumps(job.to_dict()) if as_json else str(job.id))


@cron.command("next")
@common_options
@click.argument("name")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@click.option("--count", type=click.IntRange(1, 10000), default=5, show_default=True)
@click.option("--after", "after_text", help="ISO-8601 moment to start after (default: now).")
@json_option
@errors
def cron_next(config_path: str | None, database: str | None, name: str,
              app_spec: str | None, count: int, after_text: str | None, as_json: bool) -> None:
    """The next COUNT fire instants of entry NAME strictly after a moment, as UTC."""
    ctx = Context(config_path, database, app_spec)
    entry = _entry(ctx, name)
    if after_text is None:
        after = datetime.now(UTC)
    else:
        try:
            after = datetime.fromisoformat(after_text.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"--after {after_text!r} is not ISO-8601; write e.g. "
                        "2026-03-29T00:30:00Z") from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
    instants = [i.astimezone(UTC).isoformat().replace("+00:00", "Z")
                for i in itertools.islice(entry.schedule.instants(after), count)]
    if as_json:
        click.echo(json.dumps(instants))
    else:
        for i in instants:
            click.echo(i)
