"""The supervisor (``litejobs run``): one process that owns a pool of workers.

It keeps the loop, the signals and the drain states, and asks its parts when they are next due:
``Dispatcher`` (who gets which job, sending ahead, revoke), ``Outcomes`` (recorded in batches;
``stop`` reads a worker's pipe before ending it), ``Leases`` (renewals, the held check, clock
steps), the cron ``Ticker`` and the maintenance services (heartbeat, rescuer, pruner,
checkpointer, queue upkeep). Outcomes, promotions, renewals and claims that are ready together
go into one write transaction (one commit for many jobs).

Signals only record themselves and wake the loop through ``signal.set_wakeup_fd``. The first
SIGTERM/SIGINT drains: no new claims, running jobs get ``grace`` seconds, then are stopped and
put back to ``queued`` (not counted as a failure). A second signal stops at once the same way.
An unexpected error in one part is logged and retried; it does not stop the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any

from litejobs import logs
from litejobs.app import App
from litejobs.bell import listen
from litejobs.claimer import Claimer
from litejobs.config import Config
from litejobs.dispatch import Dispatcher
from litejobs.errors import LitejobsError, StorageError
from litejobs.heap import keep_heap
from litejobs.leases import Leases
from litejobs.outcomes import Outcomes, announce
from litejobs.pool import Pool, WorkerProcess
from litejobs.services import Service
from litejobs.services.checkpointer import Checkpointer
from litejobs.services.filewatch import FileWatch
from litejobs.services.heartbeat import Heartbeat, worker_states
from litejobs.services.pruner import Pruner
from litejobs.services.rescuer import Rescuer
from litejobs.services.upkeep import QueueUpkeep
from litejobs.store import open_store
from litejobs.store.reach import until_reached
from litejobs.ticker import Ticker, build_entries
from litejobs.watchdog import Watchdog
from litejobs.worker import HEARTBEAT as WORKER_HEARTBEAT

__all__ = ["Supervisor"]

log = logging.getLogger("litejobs")

#: After an error (storage or other), the loop waits this long before it tries again.
BACK_OFF = 1.0
#: Page cache of the supervisor's connection (MB): filled only as pages are used.
SUPERVISOR_CACHE_MB = 8
#: Room in a worker's frames beyond ``max_payload`` (error text, traceback, the frame's own
#: fields): a longer frame is a broken worker.
FRAME_SLACK = 256 * 1024


class Supervisor:
    """Runs workers for ``app`` until drained. ``app_spec`` is how workers import the app."""

    def __init__(self, app: App, app_spec: str, config: Config,
                 queues: Sequence[str] | None = None) -> None:
        self.app = app
        self.config = config
        self.queues = list(queues) if queues else None
        # The supervisor's own commits (claims, outcomes, renewals, cron fires) need not be
        # fsynced: a power cut that loses one only returns a job to where a rescue finds it
        # and runs it again — at least once still holds. `durability` is about enqueues: a
        # FULL enqueue syncs the WAL, and every frame before it, anyway.
        # The claim/finish loop touches a few MB of pages over and over (the head of the
        # queue, the indexes it moves jobs between); SQLite's default 2 MB cache is just too
        # small and costs a read per row (3x slower per job), so this connection gets more.
        self.store = open_store(app.database, durability="fast", cache_mb=SUPERVISOR_CACHE_MB)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.pool = Pool(app_spec, self.id, frame_limit=2 * app.max_payload + FRAME_SLACK,
                         async_concurrency=config.async_concurrency)
        self.started = time.time()
        self.outcomes = Outcomes(self.pool, app.tasks, config.crash_limit, self._read)
        self.dispatch = Dispatcher(self.pool, config, self.outcomes, self.store)
        self.leases = Leases(self.store, self.id, config.lease, WORKER_HEARTBEAT)
        self.heartbeat = Heartbeat(self.store, self.id, self.started, self.queues,
                                   lambda: worker_states(self.pool))
        self.rescuer = Rescuer(self.store, self.id, app.tasks, config.crash_limit, config.lease)
        self.filewatch = FileWatch(self.store)
        local = self.store.local_file  # else no WAL to checkpoint, no file to be moved
        self.services: list[Service] = [
            *([self.filewatch] if local else []), self.heartbeat, self.rescuer,
            Pruner(self.store, config.retention), *([Checkpointer(self.store)] if local else []),
            QueueUpkeep(self.store)]
        self.claimer = Claimer(self.store, config, self.queues, self.pool, self.dispatch,
                               self.outcomes, self.leases, time.monotonic())
        self.watchdog = Watchdog(self.pool, self.outcomes, config, self._read, self._watch,
                                 self._unwatch)
        self.exit_code = 0
        self.draining = False
        self.stopping = False
        self.grace_deadline: float | None = None
        self.down_until = 0.0  # after an error: nothing but reading workers until then
        self._signals: list[int] = []
        self.ticker = Ticker(app, self.store, build_entries(app))
        self.next_cron: float | None = None

    # --- life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until drained by a signal; returns the process exit code."""
        keep_heap()
        try:
            listener = until_reached(lambda: listen(self.store, self.id.replace(":", "-")),
                                     self.app.database)
        except BaseException:
            self.abandon()
            raise
        sel = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w)
        old = {s: signal.signal(s, self._on_signal)
               for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        sel.register(wake_r, selectors.EVENT_READ, "signal")
        sel.register(listener.fileno(), selectors.EVENT_READ, "bell")
        self.selector = sel
        try:
            self._start()
            log.info("supervisor %s serving %s with %d workers (queues: %s)", self.id,
                     self.store.path, self.config.workers, ",".join(self.queues or ["all"]))
            logs.buffer_lines(True)  # lines go out together, when it sleeps (logs.flush)
            while True:
                wait = self._wait()
                logs.flush(idle=wait > 0)
                events = sel.select(wait)
                if not events:
                    # CPython returns [] without polling when a signal interrupts the wait
                    # past its deadline, as SIGCONT after a SIGSTOP does: look again, so an
                    # outcome already in a pipe is read (and fenced) before the timers act on
                    # leases and kill its worker as a lost one.
                    events = sel.select(0)
                for key, _ in events:
                    if key.data == "signal":
                        with contextlib.suppress(OSError):
                            os.read(wake_r, 512)
                    elif key.data == "bell":
                        rung = listener.drain()
                        self.claimer.wake = True
                        self.claimer.due_stale = self.claimer.due_stale or b"e" in rung
                        if b"c" in rung:
                            self.leases.check_now = True
                    else:
                        self._read(key.data)
                if self._cycle():
                    break
            return self.exit_code
        finally:
            self._shutdown()
            logs.buffer_lines(False)
            listener.close()
            signal.set_wakeup_fd(old_fd)
            for s, h in old.items():
                signal.signal(s, h)
            sel.close()
            os.close(wake_r)
            os.close(wake_w)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGCHLD:
            self.watchdog.child_exited = True
        else:
            self._signals.append(signum)

    def spawn_workers(self) -> None:
        """Start the worker interpreters now, before ``run``: their start-up (importing the
        app) then overlaps the file's checks. They touch no file; if ``run`` never comes, they
        exit with this process (pipe closed, parent-death signal) or by ``abandon``."""
        while len(self.pool.workers) < self.config.workers:
            self.pool.spawn()

    def abandon(self) -> None:
        """Stop workers started by ``spawn_workers`` when ``run`` will not be called."""
        for w in list(self.pool.workers.values()):
            self.pool.kill(w)
            w.proc.wait()
            self.pool.forget(w)

    def _start(self) -> None:
        def first() -> None:  # a server gone since `listen`: retried as there
            now = time.time()
            self.heartbeat.tick(now, time.monotonic())
            self.rescuer.tick(now, time.monotonic())
            self._tick(now)

        until_reached(first, self.app.database)
        for w in self.pool.workers.values():  # spawned early by spawn_workers
            self._watch(w)
        # one that exited before the SIGCHLD handler was installed is reaped (and replaced)
        self.watchdog.child_exited = bool(self.pool.workers)
        self.watchdog.fill()

    def _watch(self, w: WorkerProcess) -> None:
        self.selector.register(w.from_worker, selectors.EVENT_READ, w)

    def _unwatch(self, w: WorkerProcess) -> None:
        self.selector.unregister(w.from_worker)

    def _shutdown(self) -> None:
        for w in list(self.pool.workers.values()):
            if w.busy:
                self.outcomes.stop(w, "the supervisor stopped")
            else:
                self.pool.retire(w)
        deadline = time.monotonic() + 5.0
        for w in list(self.pool.workers.values()):
            try:
                w.proc.wait(max(0.0, deadline - time.monotonic()))
            except Exception:
                self.pool.kill(w)
                w.proc.wait()
            self.pool.forget(w)
        with contextlib.suppress(LitejobsError):
            pending = list(self.outcomes.pending)
            self.claimer.flush()
            announce(pending)
            self.heartbeat.forget()
        self.store.close()

    # --- events ------------------------------------------------------------------------------

    def _read(self, w: WorkerProcess) -> None:
        """Take in every message ``w`` has sent so far."""
        for msg in self.pool.read(w):
            self._on_message(w, msg)

    def _on_message(self, w: WorkerProcess, msg: dict[str, Any]) -> None:
        if "ready" in msg:
            w.ready = True
            self.watchdog.ready()
            self.claimer.wake = True
            return
        if "progress" in msg:
            a = w.running.get((msg["id"], msg["attempt"]))
            if a is not None and not a.withdrawn:
                self.outcomes.progressed(a.id, a.attempt, msg["progress"])
            return  # otherwise an attempt we no longer wait for: dropped
        if "log" in msg:
            logs.task_record(*msg["log"])  # a task's own record, with its job
            return
        now = time.time()
        if "revoked" in msg:
            if (gone := self.dispatch.on_revoked(w, msg["revoked"], now)) is not None:
                # unless it has just ended (stop reads the pipe first)
                self.outcomes.stop(w, "a job sent ahead to its worker was cancelled",
                                   job=gone, drop=True)
            self.claimer.wake = True
            if self.draining and not w.busy:
                self.pool.retire(w)
            return
        if not self.dispatch.finished(w, msg, now):
            return  # an outcome we stopped waiting for (its worker was stopped)
        self.claimer.wake = True
        limit = self.config.max_tasks_per_child
        mem = self.config.max_memory_per_child
        if w.busy:
            return
        if self.draining or (limit and w.done >= limit) or (mem and w.rss() > mem):
            self.pool.retire(w)

    def _cycle(self) -> bool:
        """Everything after the loop wakes; True when the supervisor should exit."""
        mono = time.monotonic()
        self._handle_signals(mono)
        self.watchdog.check(mono, replace=not (self.draining or self.stopping))
        for w in list(self.pool.workers.values()):
            if w.outbox and not self.pool.flush(w):
                self.pool.kill(w)  # its pipe broke: reaped next cycle, its jobs returned
        self._end_grace(mono)
        now = time.time()
        if not self.draining:
            self.dispatch.rebalance(now)
        if self.leases.clock_step():
            self.rescuer.hold(time.monotonic() + self.config.lease)
            self.claimer.due_stale = True
        if mono >= self.down_until:
            try:
                if self.ticker.refresh(mono):  # stored cron entries added, changed, removed
                    self.next_cron = now
                if self.next_cron is not None and now >= self.next_cron:
                    self._tick(now)
                polled, recorded = self.claimer.step(now, mono, self.draining)
                announce(recorded)  # committed: one line per job
                owed = self.ticker.owed
                if owed and (polled or any(o.a.id in owed for o in recorded)):
                    # an "overlap = queue" entry waits for one of these jobs: fire as it
                    # ends (a job another process ended is seen by the poll)
                    self.next_cron = now
                self._maintain(now, mono)
            except StorageError as exc:
                # The supervisor stays up through a full disk or a locked file and retries.
                log.error("%s; retrying in %g s", exc, BACK_OFF)
                self.down_until = mono + BACK_OFF
            except Exception:
                log.exception("unexpected error in the supervisor's loop (a bug: please "
                              "report it with this traceback); retrying in %g s", BACK_OFF)
                self.down_until = mono + BACK_OFF
        busy = any(w.busy for w in self.pool.workers.values())
        if self.draining and not busy and not self.outcomes:
            log.info("drained: no job running, exiting")
            return True
        return self.stopping

    def drain(self, why: str) -> None:
        """Drain as a first SIGTERM does (a supervised command exited); once."""
        if not self.draining:
            self._drain(time.monotonic(), why)

    def _drain(self, mono: float, why: str) -> None:
        """No new claims; running jobs get ``grace`` seconds; idle workers exit now."""
        self.draining = True
        self.grace_deadline = mono + self.config.grace
        running = [w for w in self.pool.workers.values() if w.busy]
        log.info("%s: draining; %d running job(s) get up to %g s to finish (send SIGTERM or "
                 "SIGINT again to stop now)", why, len(running), self.config.grace)
        for w in list(self.pool.workers.values()):
            if not w.busy:
                self.pool.retire(w)

    def _handle_signals(self, mono: float) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if not self.draining:
                self._drain(mono, signal.Signals(signum).name)
            else:
                log.info("%s again: stopping now, running jobs go back to queued",
                         signal.Signals(signum).name)
                self._stop_running("a second signal stopped the supervisor")
                self.stopping = True

    def _stop_running(self, reason: str) -> None:
        for w in list(self.pool.workers.values()):
            if w.busy:
                self.outcomes.stop(w, reason)

    def _end_grace(self, mono: float) -> None:
        if self.draining and self.grace_deadline is not None and mono >= self.grace_deadline:
            if any(w.busy for w in self.pool.workers.values()):
                log.info("grace period over: stopping running jobs, they go back to queued")
                self._stop_running(f"the grace period ({self.config.grace:g} s) ran out "
                                   "while draining")
            self.grace_deadline = None

    # --- maintenance -------------------------------------------------------------------------

    def _maintain(self, now: float, mono: float) -> None:
        for job_id, attempt in self.leases.lost(self.pool, mono):
            self.dispatch.lost(job_id, attempt)
        for service in self.services:
            try:
                done = service.tick(now, mono)
            except StorageError:
                raise
            except Exception:
                log.exception("the %s failed (a bug: please report it with this traceback); "
                              "trying again in %g s", service.name, BACK_OFF)
                service.hold(mono + BACK_OFF)
                continue
            if done and service is self.rescuer:
                self.claimer.wake = True
            if done and service is self.filewatch and not self.draining:
                log.error("%s. Stopping: this supervisor drains and exits, to be started again "
                          "on the file now at the path (if it was restored from a copy, move "
                          "the old -wal and -shm files aside first)", self.filewatch.problem)
                self.exit_code = 1
                self._drain(mono, "the database file changed")

    def _tick(self, now: float) -> None:
        """Fire due cron instants, then sleep until the next one. Instants are due by the
        store's clock (a PostgreSQL server's, whatever this host's says: supervisors on hosts
        whose clocks differ fire the same instants at the same moments)."""
        offset = self.store.clock_offset()
        if self.ticker.run_once(now + offset).fired:
            self.claimer.wake = True
        instant = self.ticker.next_instant(now + offset)
        self.next_cron = None if instant is None else instant - offset

    # --- timing ------------------------------------------------------------------------------

    def _wait(self) -> float:
        """Seconds until the loop has something to do, if nothing wakes it first."""
        wall = time.time()
        if self.outcomes or (self.claimer.wake and not self.draining
                             and self.dispatch.slots(wall)):
            return 0.0
        mono = time.monotonic()
        due = [self.claimer.poll_at, self.leases.next_deadline(), self.ticker.reload_at]
        due.extend(s.next_deadline() for s in self.services)
        due.extend(self.watchdog.deadlines())
        if self.grace_deadline is not None:
            due.append(self.grace_deadline)
        if self.down_until > mono:
            due = [self.down_until]
        wait = min(due) - mono
        if any(w.outbox for w in self.pool.workers.values()):
            wait = min(wait, 0.01)  # a worker's pipe was full: write the rest soon
        revoke = None if self.draining else self.dispatch.next_revoke()
        for instant in (*self.claimer.instants(), self.next_cron, revoke):
            if instant is not None:
                wait = min(wait, instant - wall)
        return max(0.0, wait)
