"""Serving the dashboard with uvicorn in the foreground (``litejobs serve``, and the child
process of ``litejobs run --serve``)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys

from litejobs.app import App
from litejobs.errors import ConfigError
from litejobs.web import asgi, need_web
from litejobs.web.context import clean_base_path
from litejobs.web.security import Credentials, LoopbackHostOnly, is_loopback

__all__ = ["die_with_parent", "listen", "serve", "url_of"]

log = logging.getLogger("litejobs.web")

#: Seconds open connections (a browser's keep-alive, a poll) get when the server stops.
SHUTDOWN_GRACE = 2


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one); one clear line when the
    address cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128)
        # asyncio sets TCP_NODELAY only on sockets made with proto IPPROTO_TCP, which
        # create_server's is not; accepted sockets inherit it from here. Without it every
        # answer after the first on a keep-alive connection (the polls) waits ~40 ms for
        # the client's delayed ACK (bench/results-web.md).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror}); "
                          "give an address such as 127.0.0.1:8077") from None
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses "
                          "it or choose another port") from None


def url_of(sock: socket.socket, base_path: str) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{base_path}/"


def serve(app: App, sock: socket.socket, read_only: bool = False, base_path: str = "",
          api: bool = False) -> None:
    """Serve the dashboard of ``app`` (and with ``api`` the HTTP API) on ``sock`` until
    SIGTERM or SIGINT."""
    need_web("starlette", "jinja2", "uvicorn")
    import uvicorn

    base_path = clean_base_path(base_path)
    web = asgi(app, read_only=read_only, base_path=base_path, api=api)
    host = str(sock.getsockname()[0])
    if is_loopback(host) and not Credentials.from_env().required:
        web = LoopbackHostOnly(web)
    # access_log off: a URL is all it would add, and the security middleware logs each
    # action's method and path; nothing of a request's body is ever logged.
    config = uvicorn.Config(web, access_log=False, log_level="warning", lifespan="off",
                            server_header=False, timeout_graceful_shutdown=SHUTDOWN_GRACE)
    server = uvicorn.Server(config)
    mode = (" and API" if api else "") + (" (read-only)" if read_only else "")
    print(f"litejobs dashboard{mode} on {url_of(sock, base_path)} for {app.path}", flush=True)
    server.run(sockets=[sock])


def die_with_parent(parent: int) -> None:
    """The child of ``run --serve``: end with the supervisor, even a SIGKILLed one, and
    leave Ctrl-C to it (it drains, then stops this process)."""
    if sys.platform.startswith("linux"):
        try:
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above
        os._exit(0)
