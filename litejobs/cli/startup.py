"""What ``check`` and ``run`` both validate before they say ok or start."""

from __future__ import annotations

import os
import time

import click

from litejobs.app import App
from litejobs.calls import named_call
from litejobs.cli.common import Context, fail
from litejobs.cron import CronEntry
from litejobs.store import is_url
from litejobs.task import CallOptions
from litejobs.ticker import build_entries

__all__ = ["startup"]


def startup(ctx: Context, need_app: bool = True) -> tuple[str, App | None, list[CronEntry]]:
    """What ``check`` and ``run`` both validate, so that they accept exactly the same setups:
    the config (already read), the database's place, the app's import and its cron entries.
    Returns the database path, the app (None when none is configured and not ``need_app``)
    and the cron entries."""
    path = ctx.database(check_app=True)
    folder = os.path.dirname(path)
    if not is_url(path) and not os.path.isdir(folder):
        raise fail(f"the database's directory {folder} does not exist; create it (mkdir -p "
                    f"{folder}) or point --database / LITEJOBS_DATABASE / database = elsewhere")
    if not ctx.config.app and not need_app:
        return path, None, []
    app = ctx.app()
    entries = build_entries(app)
    for e in entries:  # what the first fire will build, built now (payload cap, task defaults)
        try:
            app.build_job(named_call(app, e.task, e.args, e.kwargs,
                                     CallOptions(queue=e.queue, priority=e.priority)),
                          time.time())
        except (TypeError, ValueError) as exc:
            raise fail(f"cron entry {e.name!r} ({e.source}): {exc}") from None
    for warning in _window_warnings(app, ctx.config.retention):
        click.echo(f"warning: {warning}", err=True)
    return path, app, entries


def _secs(value: float) -> str:
    return f"{value:.0f}s" if value >= 1 else f"{value:g}s"


def _window_warnings(app: App, retention: float) -> list[str]:
    """Tasks whose idempotency window outlasts ``retention``: pruning deletes a finished job
    while its key should still return it, so a later enqueue runs again."""
    out = []
    for name, t in sorted(app.tasks.items()):
        window = t.defaults.unique_for
        if window is not None and window > retention:
            out.append(f"task {name}: unique_for={_secs(window)} is longer than retention="
                       f"{_secs(retention)}; finished jobs are pruned after retention, so a key "
                       "repeated after that runs again. Raise retention or lower unique_for")
    return out
