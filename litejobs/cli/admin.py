"""The commands about the setup and the file: init, check, queues, stats, doctor."""

from __future__ import annotations

import json
import os
import sys

import click

from litejobs.cli.common import Context, common_options, errors, fail, json_option, short
from litejobs.cli.startup import startup
from litejobs.config import DEFAULT_FILE, render_template
from litejobs.store import shown, verify
from litejobs.validate import check_name

__all__ = ["check", "doctor", "init", "queues", "stats"]


@click.command()
@common_options
@click.option("--app", "app_spec", help="Import path of your App, written into the file.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--systemd", is_flag=True, help="Print a systemd unit running `litejobs run` on "
              "the existing config (from this directory, as this user), instead.")
@errors
def init(config_path: str | None, database: str | None, app_spec: str | None,
         force: bool, systemd: bool) -> None:
    """Write a commented litejobs.toml (or, with --systemd, print a systemd unit)."""
    path = config_path or DEFAULT_FILE
    if systemd:
        click.echo(systemd_unit(path, database, app_spec), nl=False)
        return
    if os.path.exists(path) and not force:
        raise fail(f"{path} already exists; pass --force to overwrite it")
    try:
        # "x" without --force: never overwrite, even a file created since the check above
        with open(path, "w" if force else "x", encoding="utf-8") as f:
            f.write(render_template(app_spec, database))
    except FileExistsError:
        raise fail(f"{path} already exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}; create its directory or choose "
                    "another --config path") from None
    # Name only what was not given: those keys hold the template's placeholders.
    todo = " and ".join(f"{key} =" for key, given in (("app", app_spec), ("database", database))
                        if not given)
    click.echo(f"wrote {path}; " + (f"edit {todo}, then run" if todo else "now run")
               + " `litejobs check`")


def _unit_arg(arg: str) -> str:
    """One word of ExecStart=: quoted when needed; % and $ are systemd's specifiers."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in ' \t"\'\\;'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(config_path: str, database: str | None, app_spec: str | None) -> str:
    """A systemd unit for `litejobs run` on ``config_path``: this directory, this user, this
    interpreter's litejobs; stop timeout longer than the grace, so a drain is never cut."""
    import pwd

    if not os.path.exists(config_path):
        raise fail(f"no {config_path} to run from: write one with `litejobs init` (or pass "
                    "--config PATH), then print the unit")
    config = Context(config_path, database, app_spec).config  # a bad file: refused here
    if not config.app:
        raise fail(f"{config_path} names no app: set app = \"module:attr\" in it (or pass "
                    "--app), the unit's `litejobs run` needs one")
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    exe = os.path.join(bindir, "litejobs")
    command = [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "litejobs"]
    command += ["run", "--config", os.path.abspath(config_path)]
    command += ["--database", os.path.abspath(database)] if database else []
    command += ["--app", app_spec] if app_spec else []
    user = pwd.getpwuid(os.getuid()).pw_name
    stop = int(config.grace) + 30  # the grace, then the workers' and a command's own stop
    name = config.app.split(":")[0]
    return f"""\
# litejobs supervisor for {name}; install as /etc/systemd/system/litejobs.service, then
#   systemctl daemon-reload && systemctl enable --now litejobs
# Printed by `litejobs init --systemd`; see docs/deploy.md. To run the web server in the same
# unit, append `-- gunicorn myapp:app` (or any command) to ExecStart.
[Unit]
Description=litejobs supervisor ({name})
After=network.target

[Service]
Type=exec
User={user}
WorkingDirectory={os.getcwd().replace("%", "%%")}
Environment=PYTHONUNBUFFERED=1
# Secrets (LITEJOBS_WEB_PASSWORD, LITEJOBS_API_TOKEN, ...) belong in a file only root reads:
# EnvironmentFile=/etc/litejobs.env
ExecStart={" ".join(_unit_arg(a) for a in command)}
# SIGTERM drains: running jobs get grace = {config.grace:g} s. Only the supervisor gets it
# (mixed); it stops its workers itself and passes the signal on to a command after `--`.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={stop}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


@click.command()
@common_options
@click.option("--app", "app_spec", help="Import path of the App, module:attr.")
@errors
def check(config_path: str | None, database: str | None, app_spec: str | None) -> None:
    """Validate the config, the app import and the database file."""
    ctx = Context(config_path, database, app_spec)
    path, app, entries = startup(ctx, need_app=False)
    verify(path)
    if app is not None:
        click.echo(f"ok: app {ctx.config.app} with {len(app.tasks)} task(s): "
                   f"{', '.join(sorted(app.tasks)) or 'none'}")
        if entries:
            click.echo(f"ok: {len(entries)} cron entr{'y' if len(entries) == 1 else 'ies'}: "
                       f"{', '.join(e.name for e in entries)}")
    click.echo(f"ok: database {shown(path)}")


@click.command()
@common_options
@click.argument("action", type=click.Choice(["list", "pause", "resume"]), default="list")
@click.argument("name", required=False)
@click.option("--create", is_flag=True,
              help="Pause or resume a queue no job or config has used yet.")
@json_option
@errors
def queues(config_path: str | None, database: str | None, action: str, name: str | None,
           create: bool, as_json: bool) -> None:
    """List queues with their limits and counts, or pause / resume one (persisted)."""
    ctx = Context(config_path, database)
    app = ctx.job_app()
    if action != "list":
        if not name:
            raise fail(f"name the queue: litejobs queues {action} NAME")
        check_name("queue", name)
        known = (set(app.store.stats()["queues"]) | {q for q, _ in app.store.queue_list()}
                 | set(ctx.config.queues) | {t.defaults.queue for t in app.tasks.values()})
        if name not in known and not create:
            raise fail(f"no queue named {name!r} has been used (known: "
                        f"{', '.join(sorted(known)) or 'none'}); check the spelling, or pass "
                        f"--create to {action} it before its first job")
        app.store.set_paused(name, action == "pause")
        if action == "resume":
            app.ring(b"e")
        click.echo(f"queue {name} {'paused' if action == 'pause' else 'resumed'}")
        return
    counts = app.store.stats()["queues"]
    paused = dict(app.store.queue_list())
    items = []
    for q in sorted(set(counts) | set(paused) | set(ctx.config.queues)):
        limits = ctx.config.queues.get(q)
        items.append({"name": q, "paused": paused.get(q, False),
                      "concurrency": limits.concurrency if limits else None,
                      "rate_limit": limits.rate_limit if limits else None,
                      "counts": counts.get(q, {})})
    if as_json:
        click.echo(json.dumps(items))
        return
    for it in items:
        c = it["counts"]
        limits_text = ", ".join(f"{k}={it[k]}" for k in ("concurrency", "rate_limit") if it[k])
        click.echo(f"{it['name']:<20} {'PAUSED' if it['paused'] else 'active':<7} "
                   f"queued={c.get('queued', 0)} running={c.get('running', 0)} "
                   f"scheduled={c.get('scheduled', 0)} {limits_text}")


@click.command()
@common_options
@json_option
@errors
def stats(config_path: str | None, database: str | None, as_json: bool) -> None:
    """Count jobs by state and queue."""
    ctx = Context(config_path, database)
    data = ctx.store().stats()
    if as_json:
        click.echo(json.dumps(data))
        return
    states = list(data["states"])
    click.echo(f"{'QUEUE':<20}" + "".join(f"{s:>11}" for s in states))
    for name, counts in sorted(data["queues"].items()):
        click.echo(f"{short(name, 20):<20}" + "".join(f"{counts[s]:>11}" for s in states))
    click.echo(f"{'(all)':<20}" + "".join(f"{data['states'][s]:>11}" for s in states))


@click.command()
@common_options
@click.option("--allow-network-fs", is_flag=True,
              help="Only warn when the database is on a network file system.")
@json_option
@errors
def doctor(config_path: str | None, database: str | None, allow_network_fs: bool,
           as_json: bool) -> None:
    """Check the database file, its file system, disk, WAL, leases and supervisors."""
    from litejobs.doctor import diagnose

    ctx = Context(config_path, database)
    checks = diagnose(ctx.database(), allow_network_fs=allow_network_fs)
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks]))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for c in checks:
            click.echo(f"{marks[c.verdict]} {c.name:<12} {c.message}")
    if any(c.verdict == "fail" for c in checks):
        sys.exit(1)
