"""The dashboard in the supervisor's care (``litejobs run --serve ADDR``): a child process
running ``litejobs serve``, started after the workers, started again with a growing back-off
when it dies, stopped when the supervisor exits.

A process and not a thread: the supervisor's loop is the hot path of every claim and
outcome, and a page rendered there (or the GIL it holds) would slow the drain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from litejobs.services import Service

__all__ = ["WebServer"]

log = logging.getLogger("litejobs")

#: Back-off before a restart: doubles from FIRST up to LAST; a child that served STABLE
#: seconds starts the next back-off at FIRST again.
FIRST, LAST, STABLE = 1.0, 60.0, 60.0
#: Seconds the child gets to stop on SIGTERM before it is killed.
STOP_WAIT = 5.0


class WebServer(Service):
    name = "dashboard server"
    interval = 2.0

    def __init__(self, command: Sequence[str]) -> None:
        super().__init__()
        self.command = list(command)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.back_off = FIRST
        self.wait = self.interval

    def run_once(self, now: float) -> int:
        mono = time.monotonic()
        self.wait = self.interval
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                if mono - self.started >= STABLE:
                    self.back_off = FIRST
                return 0
            log.warning("the dashboard server (pid %d) exited with code %s; starting it "
                        "again in %g s", self.proc.pid, code, self.back_off)
            self.proc = None
            self.wait = self.back_off
            self.back_off = min(self.back_off * 2, LAST)
            return 0
        # Its own session: a terminal's Ctrl-C goes to the supervisor, which drains and
        # then stops it; it dies with the supervisor anyway (parent-death signal).
        # LITEJOBS_SYS_PATH: the app imports there as here (as in workers)
        env = dict(os.environ, LITEJOBS_SYS_PATH=json.dumps(sys.path))
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self.started = mono
        return 1

    def after(self, count: int) -> float:
        return self.wait

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after STOP_WAIT s); no restart after."""
        proc, self.proc = self.proc, None
        self.hold(float("inf"))
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
