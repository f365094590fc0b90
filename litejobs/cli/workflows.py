"""The commands about workflows: ``workflows`` (the runs), ``token complete``, and what
``show`` adds for a step, a job that continued (``litejobs.then``) and a token."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from litejobs.app import App
from litejobs.cli.common import JOB_ID, Context, common_options, errors, fail, json_option, short
from litejobs.job import Job, State, iso
from litejobs.store.schema import TOKEN_TASK
from litejobs.validate import INT64_MAX

__all__ = ["RUN_STATES", "show_lines", "step_facts", "token", "workflows"]

#: A run's states (store.flows.run_state), for ``--state``.
RUN_STATES = ("running", "succeeded", "failed", "cancelled")
#: How many runs ``workflows --state`` looks through: a run's state comes from its steps,
#: so the filter applies after the read (the newest ones first).
STATE_SCAN = 10_000
#: Upstream or downstream steps ``show`` lists one by one; the rest are counted.
SHOWN_NEIGHBOURS = 20


def counts_text(counts: dict[str, int]) -> str:
    """Step counts in the order of the life of a job: ``waiting=1 queued=2``."""
    return " ".join(f"{s.value}={counts[s.value]}" for s in State if counts.get(s.value))


@click.command()
@common_options
@click.option("--state", type=click.Choice(RUN_STATES),
              help=f"Only runs in this state (looks through the newest {STATE_SCAN:,}).")
@click.option("--limit", type=click.IntRange(1, INT64_MAX), default=50, show_default=True)
@json_option
@errors
def workflows(config_path: str | None, database: str | None, state: str | None, limit: int,
              as_json: bool) -> None:
    """List workflow runs, newest first, with their step counts per state."""
    ctx = Context(config_path, database)
    store = ctx.store()
    rows = store.runs(max(limit, STATE_SCAN) if state else limit, state)[:limit]
    if as_json:
        click.echo(json.dumps([{"id": r["id"], "name": r["name"], "state": r["state"],
                                "created_at": iso(r["created_at"]),
                                "cancelled_at": iso(r["cancelled_at"]),
                                "counts": {s.value: r["counts"][s.value] for s in State
                                           if s.value in r["counts"]}} for r in rows]))
        return
    if not rows:
        click.echo(f"no {state + ' ' if state else ''}workflow runs")
        return
    click.echo(f"{'ID':>8}  {'STATE':<10} {'CREATED':<20} {'NAME':<24} STEPS")
    for r in rows:
        created = (iso(r["created_at"]) or "")[:19].replace("T", " ")
        click.echo(f"{r['id']:>8}  {r['state']:<10} {created:<20} {short(r['name'], 24):<24} "
                   f"{counts_text(r['counts'])}")


@click.group()
def token() -> None:
    """Tokens (waitpoints) steps of a workflow wait on."""


@token.command()
@common_options
@click.argument("token_id", type=JOB_ID)
@click.option("--data", "data_json", default="null", show_default=True,
              help="The token's data as JSON: the result the steps after it see.")
@errors
def complete(config_path: str | None, database: str | None, token_id: int,
             data_json: str) -> None:
    """Complete token TOKEN_ID once; the steps waiting only on it start."""
    try:
        data = json.loads(data_json)
    except json.JSONDecodeError as exc:
        raise fail(f"--data must be JSON: {exc}; e.g. --data '{{\"approved\": true}}' "
                   "(quote strings: '\"yes\"')") from None
    except RecursionError:
        raise fail("--data is nested too deeply for JSON decoding; a stored value may be "
                   "nested at most 200 levels") from None
    ctx = Context(config_path, database)
    ctx.job_app().complete_token(token_id, data=data)
    click.echo(f"token {token_id} completed")


def _token_facts(row: dict[str, Any]) -> dict[str, Any]:
    expires = row.get("expires_at")
    return {"expires_at": iso(expires),
            "timeout": None if expires is None else expires - row["created_at"]}


def step_facts(app: App, job: Job) -> dict[str, Any]:
    """What ``show --json`` adds to ``job.to_dict()``: ``workflow`` (the run's id),
    ``run`` (id, name, state), ``after`` (upstream ids in order), ``downstream`` (ids),
    ``continuation`` (the job whose result this one's is) and ``token`` (for a token: its
    ``timeout`` in seconds and ``expires_at``)."""
    d = job.to_dict()
    run = None
    if job.workflow is not None:
        row = app.store.run(job.workflow)
        if row is not None:
            run = {"id": row["id"], "name": row["name"], "state": row["state"]}
    token_row = app.store.get_job(job.id) if job.task == TOKEN_TASK else None
    return {"workflow": d["workflow"], "run": run,
            "after": app.store.upstream_of(job.id),
            "downstream": app.store.downstream_of(job.id),
            "continuation": d["continuation"],
            "token": None if token_row is None else _token_facts(dict(token_row))}


def _neighbours(app: App, label: str, ids: list[int]) -> list[str]:
    if not ids:
        return []
    lines = [f"{label:>13}: {len(ids)} step(s)"]
    for i in ids[:SHOWN_NEIGHBOURS]:
        other = app.get_job(i)
        if other is None:
            lines.append(f"{'':>15}{i} (pruned)")
            continue
        what = "token" if other.task == TOKEN_TASK else other.task
        lines.append(f"{'':>15}{i:<8} {other.state.value:<10} {short(what, 40)}")
    if len(ids) > SHOWN_NEIGHBOURS:
        lines.append(f"{'':>15}… and {len(ids) - SHOWN_NEIGHBOURS} more "
                     "(show --json lists them all)")
    return lines


def show_lines(app: App, job: Job, facts: dict[str, Any]) -> list[str]:
    """``show``'s human lines about the job's place in a workflow."""
    lines: list[str] = []
    token_facts = facts["token"]
    if token_facts is not None:
        if token_facts["expires_at"] is None:
            limit = "no timeout"
        else:
            left = ""
            if job.state is State.WAITING:
                expires = datetime.fromisoformat(token_facts["expires_at"]).timestamp()
                left = f", {max(0.0, expires - time.time()):.0f} s from now"
            limit = (f"timeout {token_facts['timeout']:g} s: fails at "
                     f"{token_facts['expires_at']}{left}")
        lines.append(f"{'token':>13}: yes ({limit})")
        if job.state is State.WAITING:
            lines.append(f"{'':>15}complete it: litejobs token complete {job.id} "
                         "--data JSON")
    run = facts["run"]
    if run is not None:
        name = f" {run['name']!r}" if run["name"] else ""
        lines.append(f"{'workflow':>13}: run {run['id']}{name}, {run['state']}")
    elif facts["workflow"] is not None:
        lines.append(f"{'workflow':>13}: run {facts['workflow']} (pruned)")
    if facts["continuation"] is not None:
        lines.append(f"{'continuation':>13}: job {facts['continuation']} (returned "
                     "litejobs.then: its result is this job's result)")
    lines += _neighbours(app, "after", facts["after"])
    lines += _neighbours(app, "downstream", facts["downstream"])
    return lines



def report_skipped(app: App, stuck: list[tuple[int, int | None, str]]) -> None:
    """After a bulk retry: the steps it left alone because an upstream step had not
    succeeded (some of them wait again: an upstream step retried in the same command revived
    them), and the tokens (never retried)."""
    tokens = [i for i, _, task in stuck if task == TOKEN_TASK]
    steps = [(i, up) for i, up, task in stuck if task != TOKEN_TASK]
    if steps:
        states = {i: (j.state if (j := app.get_job(i)) is not None else None) for i, _ in steps}
        revived = sum(1 for s in states.values() if s is State.WAITING)
        still = [(i, up) for i, up in steps if states[i] is not State.WAITING]
        text = (f"skipped {len(steps)} workflow step(s) waiting on an upstream step that had "
                f"not succeeded")
        if revived:
            text += f"; {revived} of them wait again, behind an upstream step retried now"
        if still:
            ups = sorted({up for _, up in still if up is not None})
            text += (f"; {len(still)} stay cancelled or failed behind step(s) "
                     f"{', '.join(map(str, ups[:5]))}{', …' if len(ups) > 5 else ''}: retry "
                     "those (what they cancelled waits again), or these once those succeeded")
        click.echo(text)
    if tokens:
        click.echo(f"skipped {len(tokens)} token(s) ({', '.join(map(str, tokens[:5]))}"
                   f"{', …' if len(tokens) > 5 else ''}): a token is not retried; create a "
                   "new one (app.create_token) and enqueue the steps after it again")
