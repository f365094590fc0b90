"""``litejobs run``: the supervisor."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace

import click

from litejobs import logs
from litejobs.cli.common import Context, common_options, errors
from litejobs.cli.startup import startup
from litejobs.store import verify
from litejobs.store.reach import until_reached
from litejobs.validate import MAX_WORKERS, check_name

__all__ = ["run"]


class _RunCommand(click.Command):
    """Remembers a trailing `--`: click drops it, and `litejobs run --` with nothing after it
    (an empty `$WEB_CMD` in a Procfile) must be refused, not run without its web server."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["litejobs.bare_dashdash"] = bool(args) and args[-1] == "--"
        return super().parse_args(ctx, args)


@click.command(cls=_RunCommand)
@common_options
@click.option("--app", "app_spec", help="Import path of the App, module:attr (or file.py:attr).")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS),
              help="Worker processes (default 2).")
@click.option("--queues", help="Serve only these queues, comma-separated (default: all).")
@click.option("--grace", type=float, help="Seconds running jobs get on SIGTERM (default 30).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages (--log-level debug).")
@click.option("--log-level", type=click.Choice(list(logs.LEVELS), case_sensitive=False),
              help="debug, info (default) or warning; tasks' own records too.")
@click.option("--log-format", type=click.Choice(logs.FORMATS), default="text",
              help="text lines (default) or one JSON object a line.")
@click.option("--serve", "serve_bind", metavar="ADDR",
              help="Also serve the dashboard on ADDR (e.g. 127.0.0.1:8077), in a child "
                   "process (extra: pip install 'litejobs[web]').")
@click.option("--api", is_flag=True, help="With --serve: also serve the HTTP API under "
              "/api/v1 (needs LITEJOBS_API_TOKEN).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ARGS...]")
@errors
def run(config_path: str | None, database: str | None, app_spec: str | None,
        workers: int | None, queues: str | None, grace: float | None, verbose: bool,
        log_level: str | None, log_format: str, serve_bind: str | None, api: bool,
        command: tuple[str, ...]) -> None:
    """Run the supervisor: a pool of workers, the cron ticker and maintenance.

    After `--`, a command (e.g. `gunicorn myapp:app`) to run beside them: it gets SIGTERM,
    SIGINT and SIGHUP passed on, and when it exits the supervisor drains and exits with its
    status."""
    from litejobs.services.command import Command, resolve
    from litejobs.supervisor import Supervisor

    if api and serve_bind is None:
        raise click.UsageError("--api serves the HTTP API beside the dashboard: give --serve "
                               "ADDR too (e.g. --serve 127.0.0.1:8077 --api)")
    if serve_bind is not None:
        from litejobs.cli.serve import check_serve

        check_serve(serve_bind, api)  # refused before anything starts
    bare = click.get_current_context().meta.get("litejobs.bare_dashdash", False)
    # A missing executable, or `--` with nothing after it: refused before anything starts.
    argv = resolve(command) if command or bare else None

    level = logs.setup(log_format, "debug" if verbose else log_level or "info")
    if level <= logging.DEBUG:
        os.environ.setdefault("LITEJOBS_DEBUG", "1")
    ctx = Context(config_path, database, app_spec, workers=workers, grace=grace)
    path, app, _ = startup(ctx)
    assert app is not None
    config = replace(ctx.config, database=path)
    if config.source:
        # Workers read [http] (deliveries' allowed hosts, signing secret) from the same file,
        # whatever directory they start in.
        os.environ["LITEJOBS_CONFIG"] = os.path.abspath(config.source)
    assert ctx.app_spec is not None
    queue_list = ([check_name("--queues name", q.strip()) for q in queues.split(",")
                   if q.strip()] if queues else None)
    supervisor = Supervisor(app, ctx.app_spec, config, queue_list)
    # Workers import the app while the file is checked (quick_check reads all of it).
    supervisor.spawn_workers()
    try:
        until_reached(lambda: verify(path), path)  # a server not up yet: waited for
    except BaseException:
        supervisor.abandon()
        raise
    web = None
    if serve_bind is not None:
        from litejobs.cli.serve import serve_command
        from litejobs.services.webserver import WebServer

        web = WebServer(serve_command(serve_bind, path, ctx.app_spec, config_path, api))
        supervisor.services.append(web)  # started on the loop's first pass, after the workers
    cmd = Command(argv, supervisor) if argv else None
    if cmd is not None:
        supervisor.services.append(cmd)  # started on the loop's first pass, as the web server
    try:
        code = supervisor.run()
    finally:
        if cmd is not None:
            cmd.stop()
        if web is not None:
            web.stop()
    if cmd is not None and cmd.status is not None:
        code = cmd.status or code  # it ended by itself: its status is the pair's
    sys.exit(code)
