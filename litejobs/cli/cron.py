"""``litejobs cron``: list the entries, add and remove stored ones, trigger one now, show
upcoming fires."""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime
from typing import Any

import click

from litejobs.app import App
from litejobs.cli.common import Context, common_options, errors, fail, json_option
from litejobs.cron import CronEntry
from litejobs.schedules import entry_view, known_entries, schedule, unschedule
from litejobs.store import is_url

__all__ = ["cron"]


@click.group()
def cron() -> None:
    """Cron entries: list them, add and remove stored ones, trigger one now, show upcoming
    fire times."""


def _app(ctx: Context) -> App:
    """The configured app; without one, a bare App on the database that knows litejobs.toml's
    entries (stored entries need no app: the supervisor's app runs their tasks)."""
    if ctx.config.app:
        ctx.database(check_app=True)
        return ctx.app()
    return App(ctx.database(), durability=ctx.config.durability,
               max_payload=ctx.config.max_payload, config=ctx.config)


def _entries(ctx: Context) -> tuple[App, list[CronEntry]]:
    app = _app(ctx)
    # (no file yet: no stored entries, and reading them must not create it)
    return app, known_entries(app, check_tasks=bool(ctx.config.app),
                              stored=is_url(app.database) or os.path.exists(app.path))


def _entry(ctx: Context, name: str) -> tuple[App, CronEntry]:
    app, entries = _entries(ctx)
    for entry in entries:
        if entry.name == name:
            return app, entry
    names = ", ".join(sorted(e.name for e in entries)) or "none"
    raise fail(f"no cron entry named {name!r}; there are: {names}")


def _json_arg(flag: str, text: str | None, example: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise fail(f"{flag} {text!r} is not valid JSON ({exc}); write e.g. {flag} "
                   f"'{example}'") from None


@cron.command("list")
@common_options
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@json_option
@errors
def cron_list(config_path: str | None, database: str | None, app_spec: str | None,
              as_json: bool) -> None:
    """Every cron entry (litejobs.toml, @app.cron, stored): schedule, zone, policies, where it
    comes from, next fires, last fire and its job."""
    ctx = Context(config_path, database, app_spec)
    app, entries = _entries(ctx)
    states = {r["name"]: r for r in app.store.cron_entries()}
    now = datetime.now(UTC)
    items = [entry_view(e, states.get(e.name), now) for e in entries]
    if as_json:
        click.echo(json.dumps(items))
        return
    if not items:
        click.echo("no cron entries")
        return
    for it in items:
        click.echo(f"{it['name']}: {it['schedule']} ({it['timezone']}) → {it['task']}  "
                   f"misfire={it['misfire']} overlap={it['overlap']}  [{it['source']}]")
        click.echo(f"    next: {', '.join(it['next']) or 'never'}")
        last = it["last_fire"] or "never"
        job = f" (job {it['last_job']}: {it['last_job_state']})" if it["last_job"] else ""
        click.echo(f"    last fire: {last}{job}")


@cron.command("add")
@common_options
@click.argument("name")
@click.option("--schedule", "expression", required=True,
              help='A cron expression: 5 fields, 6 with seconds last, or @daily etc.')
@click.option("--task", required=True, help="The task's name (registered in the app).")
@click.option("--args", "args_text", help='The arguments as a JSON array, e.g. \'[1, "x"]\'.')
@click.option("--kwargs", "kwargs_text", help='Keyword arguments as a JSON object.')
@click.option("--timezone", default="UTC", show_default=True, help="An IANA time zone.")
@click.option("--queue", help="The queue its jobs go to (default: the task's).")
@click.option("--priority", type=int, help="Its jobs' priority (default: the task's).")
@click.option("--misfire", help="latest (default), skip or all: what missed instants do.")
@click.option("--catchup", type=float, help="Seconds within which a missed instant fires.")
@click.option("--overlap", help="skip (default), allow or queue: a fire while one runs.")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@json_option
@errors
def cron_add(config_path: str | None, database: str | None, name: str, expression: str,
             task: str, args_text: str | None, kwargs_text: str | None, timezone: str,
             queue: str | None, priority: int | None, misfire: str | None,
             catchup: float | None, overlap: str | None, app_spec: str | None,
             as_json: bool) -> None:
    """Store cron entry NAME in the database (or replace the stored one); every supervisor
    on the file fires it from now on."""
    ctx = Context(config_path, database, app_spec)
    args = _json_arg("--args", args_text, '[1, "x"]')
    kwargs = _json_arg("--kwargs", kwargs_text, '{"to": "a@b.c"}')
    options = {k: v for k, v in (("queue", queue), ("priority", priority),
                                 ("misfire", misfire), ("catchup", catchup),
                                 ("overlap", overlap)) if v is not None}
    item = schedule(_app(ctx), name, expression, task, [] if args is None else args, kwargs,
                    timezone, **options)
    if as_json:
        click.echo(json.dumps(item))
        return
    click.echo(f"stored cron entry {name}: {item['schedule']} ({item['timezone']}) → "
               f"{item['task']}; next: {', '.join(item['next']) or 'never'}")


@cron.command("remove")
@common_options
@click.argument("name")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@errors
def cron_remove(config_path: str | None, database: str | None, name: str,
                app_spec: str | None) -> None:
    """Remove stored cron entry NAME (litejobs.toml and @app.cron entries are removed where
    they are declared)."""
    ctx = Context(config_path, database, app_spec)
    if not unschedule(_app(ctx), name):
        raise fail(f"no stored cron entry named {name!r}; `litejobs cron list` shows them")
    click.echo(f"removed cron entry {name}")


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
    app, entry = _entry(ctx, name)
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
    _, entry = _entry(ctx, name)
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
