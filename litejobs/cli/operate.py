"""The commands for operating a deployment: ``health`` (for probes) and ``backup``."""

from __future__ import annotations

import json
import sys

import click

from litejobs.cli.common import Context, common_options, errors, json_option

__all__ = ["backup", "health"]


@click.command()
@common_options
@click.option("--max-age", type=click.FloatRange(min=0.0, min_open=True), default=10.0,
              show_default=True,
              help="Seconds within which a supervisor must have written its heartbeat.")
@json_option
@errors
def health(config_path: str | None, database: str | None, max_age: float,
           as_json: bool) -> None:
    """Exit 0 when the file is served (usable, a live supervisor, no lease left unrescued),
    else 1 with one line saying what is wrong. For systemd, Docker and Kubernetes probes."""
    from litejobs.app import App
    from litejobs.health import check

    ctx = Context(config_path, database)
    path = ctx.database()
    result = check(App(path), max_age, lease=ctx.config.lease)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    elif result.ok:
        click.echo(f"ok: {path}, {result.supervisors} supervisor(s) alive")
    else:
        click.echo(f"unhealthy: {'; '.join(result.problems)}", err=True)
    if not result.ok:
        sys.exit(1)


@click.command()
@common_options
@click.argument("dest", type=click.Path(dir_okay=True))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@json_option
@errors
def backup(config_path: str | None, database: str | None, dest: str, force: bool,
           as_json: bool) -> None:
    """Write a consistent, verified copy of the database to DEST while everything runs."""
    from litejobs.backup import backup as copy

    ctx = Context(config_path, database)
    path = ctx.existing_database()
    shown = [1.0]  # the next report, in seconds since the start: only a backup past ~1 s

    def report(done: int, total: int, seconds: float) -> None:
        if seconds >= shown[0] and done < total:
            shown[0] = seconds + 1.0
            click.echo(f"backup: {done * 100 // max(total, 1)}% ({done} of {total} pages, "
                       f"{seconds:.0f} s)", err=True)

    facts = copy(path, dest, force, report)
    if as_json:
        click.echo(json.dumps(facts))
        return
    click.echo(f"wrote {facts['path']}: {facts['jobs']} jobs, {facts['bytes'] / 1e6:.1f} MB, "
               f"schema {facts['schema_version']}, integrity ok ({facts['seconds']:g} s)")
