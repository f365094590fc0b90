"""A command in the supervisor's care (``litejobs run -- gunicorn myapp:app``): the web
server and the workers as one unit, so systemd, Docker or a Procfile runs one process.

The command starts on the loop's first pass (after the workers are spawned and the
supervisor's signal handlers are in place), in its own session, inheriting stdout, stderr and
the environment. SIGTERM, SIGINT and SIGHUP to the supervisor are forwarded to it at once (the
supervisor itself drains on the first two, as always, and ignores SIGHUP, which is the web
server's "reload"). When the command exits by itself the supervisor drains and exits with the
command's status: a web server that died takes the supervisor down, and the service manager
restarts the pair. It dies with the supervisor (parent-death signal), even a SIGKILLed one.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from litejobs.errors import ConfigError
from litejobs.services import Service

if TYPE_CHECKING:
    from litejobs.supervisor import Supervisor

__all__ = ["Command", "resolve"]

log = logging.getLogger("litejobs")

#: Signals the supervisor passes on to the command.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Seconds the command gets, once the supervisor has drained, before its process group is
#: killed (it had the SIGTERM since the drain began).
STOP_WAIT = 10.0
#: A command that exits 0 sooner than this after its start most likely daemonized itself.
DAEMON_HINT_WITHIN = 5.0


def resolve(argv: Sequence[str]) -> list[str]:
    """The command with its executable found on PATH; a ConfigError (one line) when it
    cannot be run, so nothing starts."""
    if not argv:
        raise ConfigError("no command after `--`: give one, e.g. "
                          "`litejobs run -- gunicorn myapp:app`")
    exe = argv[0]
    found = exe if os.sep in exe else shutil.which(exe)
    if found is None or not os.path.exists(found):
        raise ConfigError(f"cannot start the command: {exe!r} not found"
                          + ("" if os.sep in exe else " on PATH")
                          + "; install it or give its full path after `--`")
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise ConfigError(f"cannot start the command: {found} is not an executable file; "
                          "fix its permissions (chmod +x) or give another path after `--`")
    return [found, *argv[1:]]


def _die_with(parent: int) -> Callable[[], None]:
    """What the child runs between fork and exec. libc is loaded here, in the parent: the
    child then only calls prctl (no dlopen, no lock to inherit mid-way)."""
    prctl: Any = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl

    def child() -> None:
        if prctl is not None:
            pr_set_pdeathsig = 1
            prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the line above
            os._exit(1)

    return child


def exit_status(code: int) -> int:
    """A shell's exit status for a Popen return code (killed by signal N: 128 + N)."""
    return 128 - code if code < 0 else code


class Command(Service):
    """The supervised command, started by the first pass of ``supervisor``'s loop, which it
    drains when the command exits by itself (or cannot be started)."""

    name = "supervised command"
    interval = 1.0  # a SIGCHLD makes it due at once; this is only the fallback

    def __init__(self, argv: Sequence[str], supervisor: Supervisor) -> None:
        super().__init__()
        self.argv = list(argv)
        self.supervisor = supervisor
        self.proc: subprocess.Popen[bytes] | None = None
        self.signalled = False  # it was sent a stopping signal: its exit is not its own
        #: The exit status when the command ended by itself (or could not start), else None.
        self.status: int | None = None
        self.started = 0.0  # monotonic, when it was started
        self._old: dict[int, Any] = {}

    def run_once(self, now: float) -> int:
        if self.proc is None:
            if self.status is not None or self.supervisor.draining:
                return 0  # a signal came before the first pass: nothing to start
            self._wrap_signals()
            try:
                # preexec_fn is safe here: the supervisor's loop runs on its only thread
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509
            except OSError as exc:
                log.error("cannot start the command %s: %s", self.argv[0], exc.strerror)
                self.status = 1
                self.supervisor.drain("the command could not start")
                return 0
            self.started = time.monotonic()
            log.info("started the command (pid %d): %s", self.proc.pid, " ".join(self.argv))
            return 1
        code = self.proc.poll()
        if code is None or self.status is not None:
            return 0
        if self.signalled:
            log.info("the command (pid %d) exited with status %d", self.proc.pid,
                     exit_status(code))
            self.hold(float("inf"))
            return 0
        self.status = exit_status(code)
        how = ("on the SIGHUP passed on to it" if code == -signal.SIGHUP
               else "by itself")  # a server without a reload on SIGHUP (uvicorn) dies of it
        ran = time.monotonic() - self.started
        hint = ""
        if code == 0 and ran < DAEMON_HINT_WITHIN:
            # gunicorn --daemon, `service x start`: the server forked away and runs on in a
            # session of its own, out of reach, enqueueing jobs that no worker will run
            hint = (f" after {ran:.1f} s: a command that daemonizes itself (gunicorn "
                    "--daemon, a service script) cannot be supervised; run it in the "
                    "foreground (stop any copy it left running)")
        log.warning("the command (pid %d) exited %s with status %d%s", self.proc.pid, how,
                    self.status, hint)
        self.supervisor.drain(f"the command exited with status {self.status}")
        return 0

    def _wrap_signals(self) -> None:
        """Chain our handlers before the supervisor's: a Python-level handler runs in the
        main thread between bytecodes, so sending the signal on from it is safe."""
        for signum in (*FORWARDED, signal.SIGCHLD):
            prev = signal.getsignal(signum)
            self._old[signum] = prev

            def handler(s: int, frame: FrameType | None, prev: Any = prev) -> None:
                if s == signal.SIGCHLD:
                    self.poke()
                else:
                    self.forward(s)
                if callable(prev):
                    prev(s, frame)

            signal.signal(signum, handler)

    def forward(self, signum: int) -> None:
        """Send ``signum`` to the command (its process, as ``kill -s SIG $MAINPID`` would)."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if signum != signal.SIGHUP:
            self.signalled = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)

    def stop(self) -> None:
        """After the supervisor's loop: SIGTERM the command if it was not sent one, wait up
        to STOP_WAIT s, then kill its process group; restore the signal handlers."""
        for signum, prev in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, prev)
        self._old.clear()
        self.hold(float("inf"))
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None and not self.signalled:
            self.forward(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
        if proc.poll() is None:
            log.warning("the command (pid %d) did not stop within %g s of SIGTERM: killing "
                        "it", proc.pid, STOP_WAIT)
        # its own children too (a gunicorn's workers), whether or not it stopped
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if self.status is None and not self.signalled:
            self.status = exit_status(proc.returncode)
