"""The supervisor (``litejobs run``): one process that owns a pool of workers.

It claims jobs for idle workers, records their outcomes, renews their leases, enforces hard
timeouts, replaces workers that die, promotes scheduled jobs when due, rescues jobs of dead
supervisors, prunes and checkpoints — all from one ``selectors`` loop. Outcomes, promotions and
claims that are ready together go into one write transaction (one commit for many jobs).

Signals only record themselves and wake the loop through ``signal.set_wakeup_fd``. The first
SIGTERM/SIGINT drains: no new claims, running jobs get ``grace`` seconds, then are stopped and
put back to ``queued`` (not counted as a failure). A second signal stops at once the same way.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import secrets
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from litejobs import maintenance
from litejobs.app import App
from litejobs.bell import BellListener, bell_dir
from litejobs.config import Config, parse_rate
from litejobs.errors import LitejobsError, StorageError, WorkerDied
from litejobs.pool import Assignment, Pool, WorkerProcess, describe_exit
from litejobs.store import QueueLimits, Row, Store, Tx
from litejobs.ticker import Ticker, build_entries
from litejobs.worker import HEARTBEAT as WORKER_HEARTBEAT

__all__ = ["Supervisor"]

log = logging.getLogger("litejobs")

POLL = 1.0  # fallback claim/promote poll when no bell rings (seconds)
HELD_CHECK = 1.0  # how often running jobs are checked for cancellation
MEMORY_CHECK = 0.5
HEARTBEAT = 5.0
CHECKPOINT = 10.0
PRUNE = 60.0
WAL_TRUNCATE = 64 * 1024 * 1024
#: A change of the wall clock against the monotonic one bigger than this is a clock step.
CLOCK_STEP = 1.0
START_FAILURES = 5  # workers that die before becoming ready, in a row, before giving up
#: Jobs a worker may hold: the one it runs and some sent ahead, so it never waits for the
#: supervisor between quick jobs. How many depends on how long its recent jobs took (pace):
#: about the work of a few milliseconds, because a job sent ahead waits behind whatever its
#: worker runs, even while another worker idles.
PREFETCH = ((0.001, 32), (0.01, 8))  # (pace under, jobs held)
#: A worker whose job has run this long (seconds) gets nothing more ahead, and the jobs it was
#: sent ahead are taken back (revoked) for a worker that idles: a long job among quick ones
#: would otherwise hold them for its whole run.
REVOKE_AFTER = 0.02
#: Page cache of the supervisor's connection (MB): filled only as pages are used.
SUPERVISOR_CACHE_MB = 8


def _depth(pace: float) -> int:
    """How many jobs a worker of this pace may hold."""
    for under, held in PREFETCH:
        if pace < under:
            return held
    return 1


@dataclass(slots=True)
class _Outcome:
    kind: str  # "ok" | "fail" | "interrupt" | "unclaim"
    a: Assignment
    worker: str
    finished: float
    result: str = "null"
    error: str = ""
    traceback: str | None = None
    retry_at: float | None = None
    crashed: bool = False


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
        self.store = Store(app.store.path, durability="fast", cache_mb=SUPERVISOR_CACHE_MB)
        self.hostname = socket.gethostname()
        self.id = f"{self.hostname}:{os.getpid()}:{secrets.token_hex(3)}"
        self.pool = Pool(app_spec, self.id)
        self.started = time.time()
        self.outcomes: list[_Outcome] = []
        self.draining = False
        self.stopping = False
        self.grace_deadline: float | None = None
        self.wake = True
        self.check_held = False
        self.next_due: float | None = None  # earliest run_at of a scheduled job
        self.due_stale = True  # next_due must be read again (a ring, a poll, a promotion)
        self.start_failures = 0
        self.storage_down_until = 0.0
        self.clock_offset = time.time() - time.monotonic()
        now = time.monotonic()
        self.timers = {"poll": now, "renew": now + config.lease / 3, "held": now + HELD_CHECK,
                       "memory": now + MEMORY_CHECK, "heartbeat": now, "rescue": now,
                       "checkpoint": now + CHECKPOINT, "prune": now}
        self._signals: list[int] = []
        self.child_exited = False  # SIGCHLD seen: reap before anything else
        self.ticker = Ticker(app, self.store, build_entries(app))
        self.next_cron: float | None = None
        self.next_slot: float | None = None  # when a rate-limited queue may start a job again

    # --- life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until drained by a signal; returns the process exit code."""
        # Open the file for writing first: an unusable one (read-only, foreign) is refused
        # before anything (the wake-up socket directory) is created beside it.
        try:
            self.store.connection()
            listener = BellListener(self.store.path, self.id.replace(":", "-"))
        except OSError as exc:
            self.abandon()
            raise StorageError(
                f"cannot create the wake-up socket in {bell_dir(self.store.path)} "
                f"({exc.strerror}); the directory of {self.store.path} must be writable by "
                "this user (SQLite creates its -wal and -shm files there too)") from None
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
            while True:
                events = sel.select(self._wait())
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
                        self.wake = True
                        self.due_stale = self.due_stale or b"e" in rung
                        if b"c" in rung:
                            self.check_held = True
                    else:
                        self._on_readable(key.data)
                if self._cycle():
                    break
            return 0
        finally:
            self._shutdown()
            listener.close()
            signal.set_wakeup_fd(old_fd)
            for s, h in old.items():
                signal.signal(s, h)
            sel.close()
            os.close(wake_r)
            os.close(wake_w)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGCHLD:
            self.child_exited = True
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
        now = time.time()
        self.store.write(lambda tx: tx.heartbeat(self.id, self.hostname, os.getpid(),
                                                 self.started, now, ",".join(self.queues or [])))
        self._rescue(now)
        self._tick(now)
        for w in self.pool.workers.values():  # spawned early by spawn_workers
            self.selector.register(w.from_worker, selectors.EVENT_READ, w)
        # one that exited before the SIGCHLD handler was installed is reaped (and replaced)
        self.child_exited = bool(self.pool.workers)
        while len(self.pool.workers) < self.config.workers:
            self._add_worker()

    def _add_worker(self) -> WorkerProcess:
        w = self.pool.spawn()
        self.selector.register(w.from_worker, selectors.EVENT_READ, w)
        return w

    def _shutdown(self) -> None:
        for w in list(self.pool.workers.values()):
            if w.busy:
                self._interrupt(w, "the supervisor stopped")
                self.pool.kill(w)
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
            self._flush(time.time())
            self.store.write(lambda tx: tx.forget_supervisor(self.id))
        self.store.close()

    # --- events ------------------------------------------------------------------------------

    def _on_readable(self, w: WorkerProcess) -> None:
        for msg in self.pool.read(w):
            self._on_message(w, msg)

    def _on_message(self, w: WorkerProcess, msg: dict[str, Any]) -> None:
        if "ready" in msg:
            w.ready = True
            self.start_failures = 0
            self.wake = True
            return
        if "revoked" in msg:
            self._on_revoked(w, msg["revoked"])
            return
        a = w.job
        if a is None or a.id != msg["id"] or a.attempt != msg["attempt"]:
            return  # an outcome we stopped waiting for (killed for a timeout or cancel)
        now = time.time()
        w.job = None
        w.done += 1
        w.pace = 0.7 * w.pace + 0.3 * (now - a.started)
        if w.backlog:
            self._begin(w, w.backlog.popleft(), now)
        if msg["ok"]:
            self.outcomes.append(_Outcome("ok", a, w.name, now,
                                          result=_raw_result(msg.get("result"))))
        else:
            counted = a.attempt - a.interrupts
            retry_at = None
            if msg["retry"] and counted < a.max_attempts:
                retry_at = now + float(msg["delay"] or 0.0)
            self.outcomes.append(_Outcome("fail", a, w.name, now, error=msg["error"],
                                          traceback=msg.get("traceback"), retry_at=retry_at))
        self.wake = True
        limit = self.config.max_tasks_per_child
        mem = self.config.max_memory_per_child
        if w.busy:
            return
        if self.draining or (limit and w.done >= limit) or (mem and w.rss() > mem):
            self.pool.retire(w)

    def _revocable(self) -> list[WorkerProcess]:
        """Workers running a job with jobs sent ahead behind it, while another worker idles
        (none while draining): those jobs may be taken back once the job runs long."""
        if self.draining:
            return []
        workers = self.pool.workers.values()
        if not any(w.idle and not w.backlog for w in workers):
            return []
        return [w for w in workers if w.job is not None and w.backlog and not w.revoking]

    def _rebalance(self, now: float) -> None:
        """While a worker idles, take back the jobs sent ahead to one stuck on a long job."""
        for w in self._revocable():
            assert w.job is not None
            if now - w.job.started < REVOKE_AFTER:
                continue
            pairs = ",".join(f"[{b.id},{b.attempt}]" for b in w.backlog)
            w.revoking = True
            if not self.pool.send(w, f'{{"revoke":[{pairs}]}}\n'.encode()):
                self.pool.kill(w)  # reaped next cycle; its jobs are returned

    def _on_revoked(self, w: WorkerProcess, pairs: list[list[int]]) -> None:
        """The worker gave back jobs it had not started: their claims are undone (attempt
        numbers returned, as for a dead worker's backlog), for the idle workers to take."""
        w.revoking = False
        given = {(int(i), int(n)) for i, n in pairs}
        if not given:
            return  # it had run them all by the time it read the revoke
        now = time.time()
        log.info("took back %d job(s) sent ahead to worker %s, stuck on a long job, for an "
                 "idle one", len(given), w.pid)
        for a in w.assignments():
            if (a.id, a.attempt) in given:
                self.outcomes.append(_Outcome("unclaim", a, w.name, now))
        w.backlog = deque(a for a in w.backlog if (a.id, a.attempt) not in given)
        if w.job is not None and (w.job.id, w.job.attempt) in given:
            # Counted as begun when the job before it ended, but given back: the worker runs
            # the next one it kept, if any.
            w.job = None
            if w.backlog:
                self._begin(w, w.backlog.popleft(), now)
        self.wake = True
        if self.draining and not w.busy:
            self.pool.retire(w)

    def _cycle(self) -> bool:
        """Everything after the loop wakes; True when the supervisor should exit."""
        mono = time.monotonic()
        self._handle_signals(mono)
        self._reap()
        for w in list(self.pool.workers.values()):
            if w.outbox and not self.pool.flush(w):
                self.pool.kill(w)  # its pipe broke: reaped next cycle, its jobs returned
        self._enforce(mono)
        now = time.time()
        self._rebalance(now)
        self._watch_clock()
        try:
            if mono >= self.storage_down_until:
                if self.next_cron is not None and now >= self.next_cron:
                    self._tick(now)
                self._step(now, mono)
                self._maintain(now, mono)
        except StorageError as exc:
            # The supervisor stays up through a full disk or a locked file and retries.
            log.error("%s; retrying in 1 s", exc)
            self.storage_down_until = mono + 1.0
        busy = any(w.busy for w in self.pool.workers.values())
        if self.draining and not busy and not self.outcomes:
            log.info("drained: no job running, exiting")
            return True
        return self.stopping

    def _watch_clock(self) -> None:
        """Leases and heartbeats are wall-clock times; this loop's timers are monotonic. When
        the wall clock steps (NTP, a resumed VM, `date -s`), every lease on the host suddenly
        looks expired (forward) or long (back). So after a step, renew our leases at once and
        hold rescues back for one lease: every live supervisor renews before any is judged."""
        offset = time.time() - time.monotonic()
        step = offset - self.clock_offset
        self.clock_offset = offset
        if abs(step) < CLOCK_STEP:
            return
        mono = time.monotonic()
        log.warning("the wall clock stepped %+.1f s: renewing leases now, rescuing none for "
                    "%g s", step, self.config.lease)
        self.timers["renew"] = mono
        self.timers["rescue"] = max(self.timers["rescue"], mono + self.config.lease)
        self.due_stale = True

    def _handle_signals(self, mono: float) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if not self.draining:
                self.draining = True
                self.grace_deadline = mono + self.config.grace
                running = [w for w in self.pool.workers.values() if w.busy]
                log.info("%s: draining; %d running job(s) get up to %g s to finish (send it "
                         "again to stop now)", signal.Signals(signum).name, len(running),
                         self.config.grace)
                for w in list(self.pool.workers.values()):
                    if not w.busy:
                        self.pool.retire(w)
            else:
                log.info("%s again: stopping now, running jobs go back to queued",
                         signal.Signals(signum).name)
                self._stop_running("a second signal stopped the supervisor")
                self.stopping = True

    def _stop_running(self, reason: str) -> None:
        for w in list(self.pool.workers.values()):
            self._on_readable(w)  # outcomes already sent are recorded, not re-run
            if w.busy:
                self._interrupt(w, reason)
                self.pool.kill(w)

    def _interrupt(self, w: WorkerProcess, reason: str) -> None:
        """Return every job the worker holds to queued, not counted as a failure."""
        now = time.time()
        if w.job is not None:
            self.outcomes.append(_Outcome("interrupt", w.job, w.name, now, error=reason))
        for a in w.backlog:
            # Never started: give the claim back as if it had not happened.
            self.outcomes.append(_Outcome("unclaim", a, w.name, now))
        w.job = None
        w.backlog.clear()

    def _reap(self) -> None:
        # Polling every worker costs a waitpid each; only a SIGCHLD (or a worker we killed or
        # retired, which also raises one) makes it worth it.
        if not self.child_exited:
            return
        self.child_exited = False
        for w, code in self.pool.exited():
            self._on_readable(w)  # an outcome sent just before it exited
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(w.from_worker)
            self.pool.forget(w)
            if w.job is not None:
                a = w.job
                why = describe_exit(code)
                log.warning("%s while running job %s (%s, attempt %s)", why, a.id, a.task,
                            a.attempt)
                self._fail_by_supervisor(w, f"WorkerDied: {why}", WorkerDied, crashed=True)
            if w.backlog:
                self._interrupt(w, "its worker died")
            if not w.ready:
                self.start_failures += 1
                if self.start_failures >= START_FAILURES:
                    raise SystemExit(
                        f"litejobs: {self.start_failures} workers in a row exited before they "
                        "were ready (see their errors above); fix the app import and restart")
            if not self.draining and not self.stopping:
                self._add_worker()

    def _fail_by_supervisor(self, w: WorkerProcess, error: str,
                            error_type: type[BaseException], crashed: bool) -> None:
        a = w.job
        assert a is not None
        now = time.time()
        plan = maintenance.after_error(
            task=self.app.tasks.get(a.task), error=error, error_type=error_type,
            attempt=a.attempt, interrupts=a.interrupts, max_attempts=a.max_attempts,
            crashes=a.crashes, crash_limit=self.config.crash_limit, now=now, crashed=crashed)
        self.outcomes.append(_Outcome("fail", a, w.name, now, error=plan.error,
                                      retry_at=plan.retry_at, crashed=crashed))
        w.job = None
        self.wake = True

    def _enforce(self, mono: float) -> None:
        """Hard timeouts, memory limits and the end of the grace period."""
        check_memory = self.config.max_memory_per_child and mono >= self.timers["memory"]
        if check_memory:
            self.timers["memory"] = mono + MEMORY_CHECK
        for w in list(self.pool.workers.values()):
            a = w.job
            if a is None:
                continue
            if a.deadline is not None and mono >= a.deadline:
                log.warning("job %s (%s) ran past its timeout of %g s; stopping its worker",
                            a.id, a.task, a.timeout)
                error, kind = maintenance.timeout_error(a.attempt, a.timeout)
                self._fail_by_supervisor(w, error, kind, crashed=False)
                self.pool.kill(w)
            elif check_memory and (rss := w.rss()) > self.config.max_memory_per_child:
                log.warning("job %s (%s): worker RSS %d MB is over max_memory_per_child; "
                            "stopping it", a.id, a.task, rss >> 20)
                self._fail_by_supervisor(
                    w, f"WorkerDied: worker exceeded max_memory_per_child "
                    f"({self.config.max_memory_per_child >> 20} MB) with {rss >> 20} MB",
                    WorkerDied, crashed=True)
                self.pool.kill(w)
        if self.draining and self.grace_deadline is not None and mono >= self.grace_deadline:
            if any(w.busy for w in self.pool.workers.values()):
                log.info("grace period over: stopping running jobs, they go back to queued")
                self._stop_running(f"the grace period ({self.config.grace:g} s) ran out "
                                   "while draining")
            self.grace_deadline = None

    # --- the write transaction ---------------------------------------------------------------

    def _slots(self, now: float) -> list[str]:
        """Worker names, one per job to claim: idle workers first (the best jobs go to them),
        then places in quick workers' backlogs, round-robin."""
        if self.draining:
            return []
        limit = self.config.max_tasks_per_child
        order: list[str] = []
        extra: list[list[str]] = []
        for w in self.pool.workers.values():
            if not w.ready or w.retiring or w.revoking:
                continue
            if w.job is not None and now - w.job.started >= REVOKE_AFTER:
                continue  # on a long job: whatever it were sent would wait behind it
            held = len(w.backlog) + (w.job is not None)
            depth = _depth(w.pace)
            if held > depth // 2:
                continue  # topped up at half: one claim and one pipe write for many jobs
            room = depth - held
            if limit:
                room = min(room, limit - w.done - held)
            if room <= 0:
                continue
            if w.job is None:
                order.append(w.name)
                room -= 1
            extra.append([w.name] * room)
        for names in itertools.zip_longest(*extra):
            order.extend(n for n in names if n is not None)
        return order

    def _step(self, now: float, mono: float) -> None:
        idle = self._slots(now)
        polled = mono >= self.timers["poll"]
        if polled:
            self.timers["poll"] = mono + POLL
            self.wake = True
            self.due_stale = True
        if self.due_stale:
            self.due_stale = False
            self.next_due = self.store.next_scheduled()
        promote = self.next_due is not None and self.next_due <= now
        slot = self.next_slot is not None and now >= self.next_slot
        claim = bool(idle) and (self.wake or promote or slot)
        # Expired jobs are never claimed (the claim filters them); marking them cancelled
        # runs on the poll, so a job ends cancelled within a second of its time running out
        # without costing every claim a statement.
        expire = polled
        renew = mono >= self.timers["renew"]
        if not (self.outcomes or promote or claim or expire or renew):
            if slot and not idle:
                self.next_slot = None  # a worker finishing will claim again anyway
            return
        leases: list[tuple[int, int]] = []
        if renew:
            self.timers["renew"] = mono + self.config.lease / 3
            # A worker heartbeats every WORKER_HEARTBEAT s whatever the lease; a window
            # shorter than that (lease < ~2 s) would drop healthy workers' leases.
            fresh = mono - max(self.config.lease / 2, 3 * WORKER_HEARTBEAT)
            leases = [(a.id, a.attempt) for w in self.pool.workers.values()
                      if w.last_seen >= fresh for a in w.assignments()]
        outcomes = self.outcomes
        lease = self.config.lease

        def work(tx: Tx) -> tuple[list[Row], list[tuple[int, int]]]:
            self._record(tx, outcomes)
            if promote:
                tx.promote_due(now)
            lost = tx.renew(leases, now + lease) if leases else []
            rows: list[Row] = []
            if expire:
                tx.expire_due(now)
            if claim:
                rows = tx.claim(idle, self._served(tx.queues()), now, lease)
                self.next_slot = tx.next_slot
            return rows, lost

        rows, lost = self.store.write(work)
        self.outcomes = []
        if promote:
            self.next_due = self.store.next_scheduled()
        if claim:
            self.wake = len(rows) == len(idle)
        for job_id, attempt in lost:
            self._lost(job_id, attempt)
        by_name = {w.name: w for w in self.pool.workers.values()}
        batches: dict[str, list[str]] = {}
        for row in rows:
            batches.setdefault(row["leased_by"], []).append(
                self._dispatch(by_name[row["leased_by"]], row, now))
        for name, lines in batches.items():
            w = by_name[name]
            if not self.pool.send(w, "".join(lines).encode()):
                self.pool.kill(w)  # reaped next cycle; its jobs are returned

    def _served(self, known: list[tuple[str, bool]]) -> list[QueueLimits]:
        """The queues this supervisor claims from now, with their configured limits."""
        paused = {name for name, p in known if p}
        names = self.queues or [name for name, _ in known]
        out: list[QueueLimits] = []
        for name in names:
            if name in paused:
                continue
            q = self.config.queues.get(name)
            rate = parse_rate(q.rate_limit) if q is not None and q.rate_limit else None
            out.append(QueueLimits(name, q.concurrency if q is not None else None, rate))
        return out

    def _record(self, tx: Tx, outcomes: list[_Outcome]) -> None:
        tx.succeed_many([(o.a.id, o.a.attempt, o.result, o.worker, o.a.started, o.finished)
                         for o in outcomes if o.kind == "ok"])
        for o in outcomes:
            a = o.a
            if o.kind == "ok":
                continue
            if o.kind == "fail":
                tx.fail(a.id, a.attempt, o.error, o.traceback, o.worker, a.started, o.finished,
                        o.retry_at, crashed=o.crashed)
                if o.retry_at is not None and o.retry_at > o.finished:
                    self.next_due = min(self.next_due or o.retry_at, o.retry_at)
                    # (a retry loop of this transaction may see this twice; min is idempotent)
            elif o.kind == "interrupt":
                tx.interrupt(a.id, a.attempt, o.error, o.worker, a.started, o.finished)
            else:
                tx.unclaim(a.id, a.attempt)

    def _flush(self, now: float) -> None:
        if self.outcomes:
            outcomes = self.outcomes
            self.store.write(lambda tx: self._record(tx, outcomes))
            self.outcomes = []

    def _begin(self, w: WorkerProcess, a: Assignment, now: float) -> None:
        """``a`` is the job ``w`` runs from now: its clock and timeout start here."""
        a.started = now
        a.deadline = None if a.timeout is None else time.monotonic() + a.timeout
        w.job = a

    def _dispatch(self, w: WorkerProcess, row: Row, now: float) -> str:
        """Hand a claimed job to ``w``; returns the message line to send it."""
        a = Assignment(
            id=row["id"], attempt=row["attempt"], task=row["task"], queue=row["queue"],
            max_attempts=row["max_attempts"], interrupts=row["interrupts"],
            crashes=row["crashes"], started=now, deadline=None, timeout=row["timeout"])
        if w.job is None:
            self._begin(w, a, now)
        else:
            w.backlog.append(a)
        return (
            f'{{"id":{row["id"]},"task":{_json_str(row["task"])},"attempt":{row["attempt"]},'
            f'"queue":{_json_str(row["queue"])},"scheduled_at":{row["scheduled_at"]!r},'
            f'"max_attempts":{row["max_attempts"]},"interrupts":{row["interrupts"]},'
            f'"args":{row["args"]},"kwargs":{row["kwargs"]}}}\n'
        )

    def _lost(self, job_id: int, attempt: int) -> None:
        """Attempt ``attempt`` of a job of ours was cancelled or rescued: stop it at once (its
        worker's other jobs go back to queued). Matched by attempt too: a rescued job may
        already run again in another worker of ours, under the next attempt number."""
        for w in list(self.pool.workers.values()):
            held = w.assignments()
            if any(a.id == job_id and a.attempt == attempt for a in held):
                log.info("job %s (attempt %s) was cancelled or taken over; stopping its worker",
                         job_id, attempt)
                if w.job is not None and w.job.id == job_id and w.job.attempt == attempt:
                    w.job = None
                else:
                    w.backlog = deque(a for a in w.backlog
                                      if a.id != job_id or a.attempt != attempt)
                self._interrupt(w, "another job of its worker was cancelled")
                self.pool.kill(w)

    # --- maintenance -------------------------------------------------------------------------

    def _maintain(self, now: float, mono: float) -> None:
        t = self.timers
        if self.check_held or mono >= t["held"]:
            self.check_held = False
            t["held"] = mono + HELD_CHECK
            # pairs, not a dict by id: a frozen worker may still hold an attempt of a job that
            # another worker of ours now runs under the next number
            busy = {(a.id, a.attempt) for w in self.pool.workers.values()
                    for a in w.assignments()}
            if busy:
                held = self.store.held_by(self.id + ":")
                for job_id, attempt in busy:
                    if held.get(job_id) != attempt:
                        self._lost(job_id, attempt)
        if mono >= t["heartbeat"]:
            t["heartbeat"] = mono + HEARTBEAT
            self.store.write(lambda tx: tx.heartbeat(
                self.id, self.hostname, os.getpid(), self.started, now,
                ",".join(self.queues or [])))
        if mono >= t["rescue"]:
            t["rescue"] = mono + max(1.0, self.config.lease / 4)
            self._rescue(now)
        if mono >= t["prune"]:
            t["prune"] = mono + PRUNE
            retention = self.config.retention
            while self.store.write(lambda tx: maintenance.prune(tx, now, retention)) >= 500:
                pass
            while self.store.write(lambda tx: tx.prune_cron_fires(now - retention)) >= 500:
                pass
            self.store.write(lambda tx: tx.adopt_orphan_queues())
        if mono >= t["checkpoint"]:
            t["checkpoint"] = mono + CHECKPOINT
            self.store.checkpoint(truncate=self.store.wal_size() > WAL_TRUNCATE)

    def _tick(self, now: float) -> None:
        """Fire due cron instants, then sleep until the next one."""
        if self.ticker.entries:
            result = self.ticker.run_once(now)
            if result.fired:
                self.wake = True
            self.next_cron = self.ticker.next_instant(now)

    def _rescue(self, now: float) -> None:
        tasks = self.app.tasks
        limit = self.config.crash_limit
        supervisors = self.store.supervisors()

        def work(tx: Tx) -> int:
            n = maintenance.rescue_dead_supervisors(tx, now, self.id, tasks, limit, supervisors)
            n += maintenance.rescue_expired(tx, now, tasks, limit)
            tx.forget_supervisors_before(now - 86400)
            return n

        if self.store.write(work):
            self.wake = True

    # --- timing ------------------------------------------------------------------------------

    def _next_revoke(self) -> float | None:
        """When a job sent ahead would next be taken back (wall clock), if a worker idles."""
        starts = [w.job.started for w in self._revocable() if w.job is not None]
        return min(starts) + REVOKE_AFTER if starts else None

    def _wait(self) -> float:
        """Seconds until the loop has something to do, if nothing wakes it first."""
        wall = time.time()
        if self.outcomes or (self.wake and not self.draining and self._slots(wall)):
            return 0.0
        mono = time.monotonic()
        due = [v for k, v in self.timers.items()
               if k != "memory" or self.config.max_memory_per_child]
        due.extend(w.job.deadline for w in self.pool.workers.values()
                   if w.job is not None and w.job.deadline is not None)
        if self.grace_deadline is not None:
            due.append(self.grace_deadline)
        if self.storage_down_until > mono:
            due = [self.storage_down_until]
        wait = min(due) - mono
        if any(w.outbox for w in self.pool.workers.values()):
            wait = min(wait, 0.01)  # a worker's pipe was full: write the rest soon
        for instant in (self.next_due, self.next_cron, self.next_slot, self._next_revoke()):
            if instant is not None:
                wait = min(wait, instant - wall)
        return max(0.0, wait)


@functools.lru_cache(maxsize=4096)
def _json_str(value: str) -> str:
    """A task or queue name as a JSON string (names repeat: cached)."""
    return json.dumps(value)


def _raw_result(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
