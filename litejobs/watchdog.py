"""The watchdog: keeps the pool whole and its workers within their limits.

It reaps workers that exited (a crash fails their running job under the crash limit, their
jobs sent ahead go back), replaces them (a start that fails is retried a second later: too many
open files or no memory for a process must not stop the supervisor), stops workers that broke
the protocol, and enforces hard timeouts and ``max_memory_per_child``. Every stop goes through
``Outcomes.stop``, which reads the worker's pipe first.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from litejobs.config import Config
from litejobs.errors import WorkerDied
from litejobs.outcomes import Outcomes
from litejobs.pool import Pool, WorkerProcess, describe_exit
from litejobs.retry import timeout_error

__all__ = ["MEMORY_CHECK", "RESPAWN", "START_FAILURES", "Watchdog"]

log = logging.getLogger("litejobs")

MEMORY_CHECK = 0.5
START_FAILURES = 5  # workers that die before becoming ready, in a row, before giving up
#: After a failed worker start, the next try comes this many seconds later.
RESPAWN = 1.0


class Watchdog:
    """Reaping, replacing and limiting the pool's workers."""

    def __init__(self, pool: Pool, outcomes: Outcomes, config: Config,
                 read: Callable[[WorkerProcess], None],
                 watch: Callable[[WorkerProcess], None],
                 unwatch: Callable[[WorkerProcess], None]) -> None:
        self.pool = pool
        self.outcomes = outcomes
        self.config = config
        self.read = read  # take in a worker's messages
        self.watch = watch  # have the loop wake when a worker's pipe is readable
        self.unwatch = unwatch
        self.start_failures = 0
        self.respawn_at: float | None = None  # a worker could not be started: try again then
        self.memory_at = time.monotonic() + MEMORY_CHECK
        self.child_exited = False  # SIGCHLD seen: reap before anything else

    def deadlines(self) -> list[float]:
        """When (monotonic) the watchdog next has something to do."""
        due = [a.deadline for w in self.pool.workers.values() for a in w.running.values()
               if a.deadline is not None]
        if self.config.max_memory_per_child:
            due.append(self.memory_at)
        if self.respawn_at is not None:
            due.append(self.respawn_at)
        return due

    def ready(self) -> None:
        """A worker finished starting: the count of failed starts begins again."""
        self.start_failures = 0

    def fill(self) -> None:
        """Start workers until the pool is full; a failed start is retried ``RESPAWN`` s
        later, it does not stop the supervisor."""
        self.respawn_at = None
        while len(self.pool.workers) < self.config.workers:
            try:
                w = self.pool.spawn()
            except OSError as exc:
                log.error("cannot start a worker (%s); trying again in %g s", exc, RESPAWN)
                self.respawn_at = time.monotonic() + RESPAWN
                return
            self.watch(w)

    def check(self, mono: float, replace: bool) -> None:
        """Reap, stop broken workers, enforce limits; refill the pool if ``replace``."""
        self._reap(replace)
        self._stop_broken()
        if replace and self.respawn_at is not None and mono >= self.respawn_at:
            self.fill()
        self._enforce(mono)

    def _reap(self, replace: bool) -> None:
        # Polling every worker costs a waitpid each; only a SIGCHLD (or a worker we killed or
        # retired, which also raises one) makes it worth it.
        if not self.child_exited:
            return
        self.child_exited = False
        for w, code in self.pool.exited():
            if w.from_worker >= 0:
                self.read(w)  # an outcome sent just before it exited
            with contextlib.suppress(KeyError, ValueError):
                self.unwatch(w)
            self.pool.forget(w)
            why = describe_exit(code)
            for a in list(w.running.values()):  # each coroutine it ran, or its one sync job
                if not a.withdrawn:
                    log.warning("%s while running job %s (%s, attempt %s)", why, a.id, a.task,
                                a.attempt)
                    self.outcomes.failed_by_supervisor(w, a, f"WorkerDied: {why}", WorkerDied,
                                                       crashed=True)
            if w.busy:
                self.outcomes.interrupt(w, "its worker died")
            if not w.ready:
                self.start_failures += 1
                if self.start_failures >= START_FAILURES:
                    raise SystemExit(
                        f"litejobs: {self.start_failures} workers in a row exited before they "
                        "were ready (see their errors above); fix the app import and restart")
            if replace:
                self.fill()

    def _stop_broken(self) -> None:
        """Workers that sent what the protocol does not allow are stopped: nothing more they
        say can be trusted. Their running job counts as a crash; the rest go back."""
        for w in list(self.pool.workers.values()):
            if w.broken is not None and not w.retiring:
                log.error("worker %s broke the protocol (%s); stopping it", w.pid, w.broken)
                with contextlib.suppress(KeyError, ValueError):
                    self.unwatch(w)  # nothing it sends is read any more
                error = f"WorkerDied: its worker sent an unreadable message ({w.broken})"
                self.outcomes.stop(w, "its worker broke the protocol",
                                   fail=(error, WorkerDied, True))

    def _enforce(self, mono: float) -> None:
        """Hard timeouts and memory limits of running jobs' workers."""
        mem = self.config.max_memory_per_child
        check_memory = bool(mem) and mono >= self.memory_at
        if check_memory:
            self.memory_at = mono + MEMORY_CHECK
        for w in list(self.pool.workers.values()):
            if not w.running or w.retiring:
                continue
            if any(a.deadline is not None and mono >= a.deadline for a in w.running.values()):
                self._overran(w, mono)
            elif check_memory and (rss := w.rss()) > mem:
                jobs = ", ".join(f"{a.id} ({a.task})" for a in w.running.values())
                if self.outcomes.stop(w, "its worker went over max_memory_per_child",
                                      fail=(f"WorkerDied: worker exceeded max_memory_per_child "
                                            f"({mem >> 20} MB) with {rss >> 20} MB",
                                            WorkerDied, True)):
                    log.warning("job %s: its worker used %d MB, over max_memory_per_child; "
                                "stopped it", jobs, rss >> 20)

    def _overran(self, w: WorkerProcess, mono: float) -> None:
        """Jobs of ``w`` ran past their hard timeouts (or, cancelled, did not end in time):
        the worker is stopped; each of them fails, its other running jobs go back to queued."""
        self.read(w)  # what it finished meanwhile is recorded, not failed
        late = [a for a in w.running.values() if a.deadline is not None and mono >= a.deadline]
        if not late:
            return
        for b in late[1:]:  # (the first fails through stop, which ends the worker)
            if not b.cancelling:
                self.outcomes.failed_by_supervisor(w, b, *timeout_error(b.attempt, b.timeout),
                                                   crashed=False)
        a = late[0]
        if a.cancelling:
            if self.outcomes.stop(w, "another job of its worker did not stop when cancelled",
                                  job=a, drop=True):
                log.warning("job %s (%s, attempt %s) did not stop when cancelled; stopped "
                            "worker %s", a.id, a.task, a.attempt, w.pid)
            return
        error, kind = timeout_error(a.attempt, a.timeout)
        if self.outcomes.stop(w, "another job of its worker timed out", job=a,
                              fail=(error, kind, False)):
            # the job's own line says so once recorded (outcomes.announce)
            log.debug("job %s (%s) ran past its timeout of %g s; stopped worker %s",
                      a.id, a.task, a.timeout, w.pid)
