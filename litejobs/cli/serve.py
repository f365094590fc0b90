"""``litejobs serve``: the dashboard, /metrics and /healthz, in the foreground."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import replace

import click

from litejobs.app import App
from litejobs.cli.common import Context, common_options, errors, fail
from litejobs.errors import ConfigError
from litejobs.store import is_url

__all__ = ["check_serve", "serve", "serve_command"]

DEFAULT_BIND = "127.0.0.1:8077"


class Refused(click.ClickException):
    """A refusal that exits 2, as a usage error does: the command line must change."""

    exit_code = 2


def check_serve(bind: str, api: bool = False) -> tuple[str, int]:
    """What ``serve`` and ``run --serve`` refuse before starting anything: a missing ``web``
    extra (exit 1), a non-loopback address without credentials or ``--api`` without
    ``LITEJOBS_API_TOKEN`` (exit 2), an address that cannot be listened on (exit 1)."""
    from litejobs.web import need_web
    from litejobs.web.security import Credentials, check_bind, parse_bind

    try:
        need_web("starlette", "jinja2", "uvicorn")
    except ConfigError as exc:
        raise fail(str(exc)) from None
    host, port = parse_bind(bind)
    try:
        check_bind(host, Credentials.from_env())
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    if api:
        from litejobs.web.api import api_tokens

        try:
            api_tokens()
        except ConfigError as exc:
            raise Refused(str(exc)) from None
    from litejobs.web.server import listen

    listen(host, port).close()  # a port in use is said now, not by a child that dies later
    return host, port


def serve_command(bind: str, database: str, app_spec: str, config_path: str | None,
                  api: bool = False) -> list[str]:
    """The command line of ``run --serve``'s child: this ``serve``, on the supervisor's
    database, app and config, dying with the supervisor."""
    where = ["--database", database]
    if is_url(database):
        # A URL's password must not show in `ps`: the child inherits it in the environment.
        os.environ["LITEJOBS_DATABASE"] = database
        where = []
    command = [sys.executable, "-m", "litejobs", "serve", "--bind", bind, *where, "--app",
               app_spec, "--supervised-by", str(os.getpid())]
    command += ["--api"] if api else []
    return command + (["--config", config_path] if config_path else [])


@click.command()
@common_options
@click.option("--app", "app_spec", help="Import path of the App, module:attr (optional: "
              "without it the dashboard shows the database alone).")
@click.option("--bind", default=DEFAULT_BIND, show_default=True, metavar="ADDR",
              help="Address to listen on; any but loopback needs LITEJOBS_WEB_PASSWORD or "
                   "LITEJOBS_WEB_TOKEN.")
@click.option("--read-only", is_flag=True, help="Hide and refuse every action.")
@click.option("--base-path", default="", metavar="PATH",
              help="Serve under this path (e.g. /jobs) behind a proxy that passes it on.")
@click.option("--api", is_flag=True,
              help="Also serve the HTTP API under /api/v1 (needs LITEJOBS_API_TOKEN and the "
                   "app: only its registered tasks can be enqueued).")
@click.option("--supervised-by", type=int, hidden=True)  # run --serve's child
@errors
def serve(config_path: str | None, database: str | None, app_spec: str | None, bind: str,
          read_only: bool, base_path: str, api: bool, supervised_by: int | None) -> None:
    """Serve the dashboard, /metrics and /healthz, and with --api the HTTP API (extra: pip
    install 'litejobs[web]')."""
    from litejobs.web.context import clean_base_path
    from litejobs.web.server import die_with_parent, listen

    if supervised_by is not None:
        die_with_parent(supervised_by)
        extra_path = os.environ.get("LITEJOBS_SYS_PATH")
        if extra_path:  # the supervisor's, so the app imports as it did there
            sys.path[:] = json.loads(extra_path)
    host, port = check_serve(bind, api)
    base_path = clean_base_path(base_path)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s litejobs[%(process)d] %(levelname)s %(message)s")
    ctx = Context(config_path, database, app_spec)
    if api and not ctx.app_spec:
        raise Refused("--api needs the app (--app module:attr, LITEJOBS_APP or app = in "
                      "litejobs.toml): only its registered tasks can be enqueued")
    app = _app(ctx)
    sock = listen(host, port)
    from litejobs.web.server import serve as run_server

    run_server(app, sock, read_only=read_only, base_path=base_path, api=api)


def _app(ctx: Context) -> App:
    """The configured app (its tasks and cron entries show), or a bare App on the file."""
    path = ctx.database(check_app=True) if ctx.app_spec else ctx.database()
    if not is_url(path) and not os.path.exists(path):
        raise fail(f"no database at {path}; check --database / LITEJOBS_DATABASE / the config "
                   "(it is created by the first enqueue or `litejobs run`)")
    app = ctx.app() if ctx.app_spec else App(path, durability=ctx.config.durability)
    if ctx.config.queues and not app.config.queues:
        # the queue limits litejobs.toml gives the supervisor, shown on /queues
        app.config = replace(app.config, queues=ctx.config.queues)
    return app
