"""``litejobs migrate-store SRC DST``: move a SQLite file's store to PostgreSQL (see
``litejobs.storemove`` for the rules)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from litejobs.cli.common import Context, errors, json_option

if TYPE_CHECKING:
    from litejobs.storemove import Progress

__all__ = ["migrate_store"]


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _progress_line(p: Progress) -> None:
    eta = "" if p.eta is None else f", about {p.eta:.0f} s left"
    line = (f"migrate-store: {_n(p.done)} of {_n(p.total)} rows "
            f"({p.done * 100 // max(p.total, 1)}%), {_n(p.rate)} rows/s{eta} ({p.table})")
    if sys.stderr.isatty():
        click.echo(f"\r{line}\x1b[K", err=True, nl=False)
    else:
        click.echo(line, err=True)


@click.command("migrate-store")
@click.argument("source", metavar="SRC", type=click.Path(dir_okay=False))
@click.argument("destination", metavar="DST")
@click.option("--dry-run", is_flag=True, help="Count what would be moved; write nothing.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="A litejobs.toml (its lease judges whether a supervisor is still alive).")
@json_option
@errors
def migrate_store(source: str, destination: str, dry_run: bool, config_path: str | None,
                  as_json: bool) -> None:
    """Copy every job (and attempts, workflows, tokens, cron state, pauses, stored schedules,
    tags, figures) from the SQLite file SRC into the empty PostgreSQL store DST
    (postgresql://user@host/dbname), in one transaction, checked before it commits. Stop
    every supervisor and producer first; SRC is only read."""
    from litejobs.storemove import migrate_store as move

    lease = Context(config_path, None).config.lease
    try:
        report = move(source, destination, lease=lease, dry_run=dry_run,
                      progress=None if as_json else _progress_line)
    except ImportError as exc:  # the postgres extra is missing: its one line
        raise click.ClickException(str(exc)) from None
    if not as_json and not dry_run and report.seconds >= 1.0 and sys.stderr.isatty():
        click.echo("", err=True)  # end the progress line
    if as_json:
        click.echo(json.dumps({
            "source": report.source, "destination": report.destination,
            "dry_run": report.dry_run, "source_rows": report.source_rows,
            "copied": report.copied, "requeued": report.requeued, "dropped": report.dropped,
            "checksum": report.checksum, "seconds": round(report.seconds, 3),
            "destination_rows": report.destination_rows}))
        return
    if dry_run:
        click.echo(f"dry run: would copy from {source} (nothing written anywhere):")
        for table, n in report.source_rows.items():
            click.echo(f"  {table:<15} {_n(n):>12}")
        there = report.destination_rows
        if there is None:
            click.echo(f"{report.destination}: no litejobs store yet; it would be created")
        elif any(there.values()):
            held = ", ".join(f"{n} {t}" for t, n in sorted(there.items()) if n)
            click.echo(f"{report.destination} is NOT empty ({held}): the move would refuse it")
        else:
            click.echo(f"{report.destination}: an empty litejobs store, ready")
        return
    rate = report.rows / report.seconds if report.seconds > 0 else 0.0
    click.echo(f"copied {_n(report.copied.get('jobs', 0))} jobs, {_n(report.rows)} rows in "
               f"all, from {source} to {report.destination} in {report.seconds:.1f} s "
               f"({_n(rate)} rows/s)")
    for table, n in report.copied.items():
        click.echo(f"  {table:<15} {_n(n):>12}")
    from litejobs.storemove import NOT_MOVED

    click.echo("not moved: " + "; ".join(f"{t} ({why})" for t, why in NOT_MOVED.items()))
    for table, n in report.dropped.items():
        click.echo(f"left out: {n} row(s) of {table} (starts not yet known of jobs returned "
                   "to queued)")
    click.echo("checked before the commit: every table's row count, and a checksum of the "
               f"jobs' ids and states ({report.checksum})")
    if report.requeued:
        ids = ", ".join(str(i) for i in report.requeued[:10])
        more = "" if len(report.requeued) <= 10 else f" and {len(report.requeued) - 10} more"
        click.echo(f"{len(report.requeued)} job(s) were running when their supervisor stopped "
                   f"({ids}{more}): moved as queued, their attempt recorded as interrupted")
    click.echo(f"{source} is left as it was (only read); keep it until the new store runs "
               "well, then remove it.")
    click.echo("Now point litejobs at PostgreSQL, in litejobs.toml:")
    click.echo(f'  database = "{report.destination}"')
    click.echo(f"or in the environment: LITEJOBS_DATABASE='{report.destination}'")
    if "***" in report.destination:
        click.echo("(the password is shown as ***: put it back, or keep it in ~/.pgpass or "
                   "PGPASSWORD)")
