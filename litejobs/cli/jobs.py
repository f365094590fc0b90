"""The commands about jobs: enqueue, jobs, show, explain, retry, cancel, purge."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from litejobs.cli.bulk import bulk, filter_options
from litejobs.cli.common import (
    JOB_ID,
    Context,
    common_options,
    errors,
    fail,
    job_or_fail,
    json_option,
    short,
)
from litejobs.cli.workflows import report_skipped, show_lines, step_facts
from litejobs.job import State, iso, sources
from litejobs.redact import mask, mask_args
from litejobs.validate import INT64_MAX

__all__ = ["cancel", "enqueue", "explain", "jobs", "purge", "retry", "show"]

APP_HELP = "Import path of the App, module:attr (its tasks' redact= arguments are masked)."

#: The states a job can be cancelled in.
PENDING = [s.value for s in sources(State.CANCELLED)]


def _masker(ctx: Context) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What hides the ``redact`` arguments in a job's ``to_dict()``: those of the configured
    app's tasks and of the built-in ones."""
    # With no app configured, a bare App still knows the built-in tasks' secrets (the
    # headers of litejobs.deliver, e.g. an Authorization value).
    app = ctx.app() if ctx.config.app else ctx.job_app()

    def masked(d: dict[str, Any]) -> dict[str, Any]:
        d["args"] = mask_args(app, d["task"], d["args"])
        d["kwargs"] = mask(app, d["task"], d["kwargs"])
        return d

    return masked


@click.command()
@common_options
@click.argument("task")
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@click.option("--args", "args_json", default="[]", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("--delay", type=float, help="Run no sooner than this many seconds from now.")
@click.option("--queue", help="Queue (default: the task's).")
@click.option("--priority", type=click.IntRange(-100, 100), help="-100..100, higher first.")
@click.option("--key", help="Idempotency key.")
@json_option
@errors
def enqueue(config_path: str | None, database: str | None, task: str, app_spec: str | None,
            args_json: str, kwargs_json: str, delay: float | None, queue: str | None,
            priority: int | None, key: str | None, as_json: bool) -> None:
    """Enqueue TASK (a registered task name); prints the new job's id."""
    ctx = Context(config_path, database, app_spec)
    app = ctx.app()
    ctx.database(check_app=True)
    if task not in app.tasks:
        raise fail(f"unknown task {task!r}; the app {ctx.config.app} has: "
                    f"{', '.join(sorted(app.tasks)) or 'no tasks'}")
    try:
        args = json.loads(args_json)
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise fail(f"--args/--kwargs must be JSON: {exc}") from None
    except RecursionError:
        raise fail("--args/--kwargs are nested too deeply for JSON decoding; a stored value "
                    "may be nested at most 200 levels") from None
    if not isinstance(args, list):
        raise fail("--args must be a JSON array, e.g. '[1, 2]'")
    if not isinstance(kwargs, dict):
        raise fail('--kwargs must be a JSON object, e.g. \'{"to": "a@b.c"}\'')
    options = {k: v for k, v in (("delay", delay), ("queue", queue), ("priority", priority),
                                 ("key", key)) if v is not None}
    job = app.enqueue(task, args, kwargs, **options)
    click.echo(json.dumps(job.to_dict()) if as_json else str(job.id))


@click.command()
@common_options
@click.option("--state", type=click.Choice([s.value for s in State]))
@click.option("--task", help="Only jobs of this task.")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--tag", help="Only jobs with this tag.")
@click.option("--workflow", help="Only the steps of this workflow run (its id: "
              "`litejobs workflows`).")
@click.option("--limit", type=click.IntRange(1, INT64_MAX), default=50, show_default=True)
@click.option("--app", "app_spec", help=APP_HELP)
@json_option
@errors
def jobs(config_path: str | None, database: str | None, state: str | None, task: str | None,
         queue: str | None, tag: str | None, workflow: str | None, limit: int,
         app_spec: str | None, as_json: bool) -> None:
    """List jobs, newest first."""
    ctx = Context(config_path, database, app_spec)
    app = ctx.job_app()
    items = app.jobs(state=state, task=task, queue=queue, tag=tag, workflow=workflow,
                     limit=limit)
    if as_json:
        masked = _masker(ctx)
        click.echo(json.dumps([masked(j.to_dict()) for j in items]))
        return
    if not items:
        click.echo("no jobs")
        return
    click.echo(f"{'ID':>8}  {'STATE':<10} {'TASK':<30} {'QUEUE':<12} {'TRY':>3}  ERROR")
    for j in items:
        click.echo(f"{j.id:>8}  {j.state.value:<10} {short(j.task, 30):<30} "
                   f"{short(j.queue, 12):<12} {j.attempt:>3}  {short(j.error, 60)}")


@click.command()
@common_options
@click.argument("job_id", type=JOB_ID)
@click.option("--app", "app_spec", help=APP_HELP)
@json_option
@errors
def show(config_path: str | None, database: str | None, job_id: int, app_spec: str | None,
         as_json: bool) -> None:
    """Show one job and its attempts; for a workflow step, its run and the steps before and
    after it. Arguments its task marks ``redact`` are shown as •••."""
    ctx = Context(config_path, database, app_spec)
    app = ctx.job_app()
    job = job_or_fail(app, job_id)
    attempts = job.attempts()
    facts = step_facts(app, job)
    masked = _masker(ctx)
    if as_json:
        data = masked(job.to_dict())
        data.update(facts)
        data["attempts"] = [a.to_dict() for a in attempts]
        click.echo(json.dumps(data))
        return
    d = masked(job.to_dict())
    if ctx.config.app and job.task not in ctx.app().tasks:
        click.echo(f"{'note':>13}: task {job.task!r} is not registered in the app "
                   f"{ctx.config.app}: arguments it may redact are shown as stored")
    for key in ("id", "task", "queue", "state", "priority", "attempt", "max_attempts", "args",
                "kwargs", "key", "tags", "run_at", "created_at", "started_at", "finished_at",
                "progress", "metadata", "result", "error"):
        value = d[key]
        if value is None or value in ([], {}):
            continue
        # unescaped: the text is read by people (and a masked value shows as •••)
        shown = json.dumps(value, ensure_ascii=False) if key in (
            "args", "kwargs", "result", "tags", "metadata") else value
        if key == "progress":
            shown = f"{value['fraction']:.0%} {value['message'] or ''}".rstrip()
        click.echo(f"{key:>13}: {shown}")
    for line in show_lines(app, job, facts):
        click.echo(line)
    for a in attempts:
        click.echo(f"  attempt {a.attempt}: {a.outcome} {iso(a.started_at) or ''} → "
                   f"{iso(a.finished_at) or ''} {short(a.error, 100)}")
        if a.traceback:
            click.echo("    " + a.traceback.rstrip().replace("\n", "\n    "))


@click.command()
@common_options
@click.argument("job_id", type=JOB_ID)
@click.option("--app", "app_spec", help="Import path of the App (to check the task exists).")
@json_option
@errors
def explain(config_path: str | None, database: str | None, job_id: int,
            app_spec: str | None, as_json: bool) -> None:
    """Say in one sentence why a job is not running now."""
    from litejobs.explain import explain as explain_job

    ctx = Context(config_path, database, app_spec)
    app = ctx.job_app()
    tasks = set(ctx.app().tasks) if ctx.config.app else None
    result = explain_job(app.store, job_id, ctx.config, tasks)
    if result is None:
        raise fail(f"no job with id {job_id} (never enqueued, or pruned after retention)")
    click.echo(json.dumps(result.to_dict()) if as_json else result.message)


@click.command()
@common_options
@click.argument("job_id", type=JOB_ID, required=False)
@click.option("--state", "states", type=click.Choice(["failed", "cancelled"]), multiple=True,
              help="Bulk: retry jobs in this state (default failed).")
@filter_options
@click.option("--retries", type=click.IntRange(0, INT64_MAX - 1), default=0, show_default=True,
              help="Retries each gets after its new attempt.")
@errors
def retry(config_path: str | None, database: str | None, job_id: int | None,
          states: tuple[str, ...], task: str | None, queue: str | None, since: str | None,
          yes: bool, retries: int) -> None:
    """Put a failed or cancelled job (JOB_ID), or every match of the filters, back to queued."""
    ctx = Context(config_path, database)
    app = ctx.job_app()
    if job_id is None:
        now = time.time()
        stuck: list[tuple[int, int | None, str]] = []

        def act(ids: list[int]) -> int:
            blocked: list[tuple[int, int | None, str]] = []
            done = app.store.retry_many(ids, retries, now, blocked)
            stuck.extend(blocked)
            return done

        bulk(app, "retry", list(states or ["failed"]), task, queue, since, yes, act)
        report_skipped(app, stuck)
        return
    job = job_or_fail(app, job_id)
    if not app.store.retry(job_id, retries, time.time()):
        raise fail(f"job {job_id} is {job.state.value}; only failed or cancelled jobs can be "
                    "retried")
    app.ring(b"e")
    click.echo(f"job {job_id} queued again")


@click.command()
@common_options
@click.argument("job_id", type=JOB_ID, required=False)
@click.option("--state", "states", type=click.Choice(PENDING), multiple=True,
              help="Bulk: cancel jobs in this state (default: all four).")
@filter_options
@errors
def cancel(config_path: str | None, database: str | None, job_id: int | None,
           states: tuple[str, ...], task: str | None, queue: str | None, since: str | None,
           yes: bool) -> None:
    """Cancel a job (JOB_ID), or every match of the filters: pending ones never run, running
    ones are stopped; the workflow steps waiting on a cancelled one are cancelled too."""
    ctx = Context(config_path, database)
    app = ctx.job_app()
    if job_id is None:
        if not (task or queue or since or states):
            raise fail("give a JOB_ID, or filters (--state, --task, --queue, --since) for a "
                        "bulk cancel")
        now = time.time()
        bulk(app, "cancel", list(states or PENDING), task, queue, since, yes,
              lambda ids: app.store.cancel_many(ids, "cancelled", now))
        return
    job = job_or_fail(app, job_id)
    if not job.cancel():
        raise fail(f"job {job_id} already ended {job.state.value}; nothing to cancel")
    click.echo(f"job {job_id} cancelled")


@click.command()
@common_options
@click.option("--state", "states", type=click.Choice(["succeeded", "failed", "cancelled"]),
              multiple=True, help="Delete jobs in this state (default: all three).")
@click.option("--older-than", "older_than", help="Only jobs created before: a duration ago "
              "(7d: older than a week) or an ISO-8601 time.")
@filter_options
@errors
def purge(config_path: str | None, database: str | None, states: tuple[str, ...],
          older_than: str | None, task: str | None, queue: str | None, since: str | None,
          yes: bool) -> None:
    """Delete finished jobs (and their attempts) matching the filters; ``--older-than 7d``
    deletes those created over a week ago (``--since 7d``: the ones of the last week)."""
    ctx = Context(config_path, database)
    app = ctx.job_app()
    bulk(app, "purge", list(states or ["succeeded", "failed", "cancelled"]), task, queue,
          since, yes, app.store.purge, older_than)
