"""The supervisor's pool of worker processes: start, talk to, reap and end them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from litejobs import protocol

__all__ = ["Assignment", "Pool", "WorkerProcess", "describe_exit"]

# A fresh interpreter per worker: it never inherits a SQLite connection or a lock.
_BOOT = "import sys; from litejobs.worker import main; sys.exit(main())"


@dataclass(slots=True)
class Assignment:
    """A job sent to a worker, as the supervisor knows it."""

    id: int
    attempt: int
    task: str
    queue: str
    max_attempts: int
    interrupts: int
    crashes: int
    started: float  # wall clock, stored in the attempt row
    deadline: float | None  # monotonic; None without a timeout
    timeout: float | None
    #: No longer ours (cancelled or rescued) while sent ahead: asked back, alone.
    withdrawn: bool = False
    #: A workflow step: its success may ready steps waiting on it.
    step: bool = False
    #: An ``async def`` task's job: it runs beside its worker's other coroutines.
    coro: bool = False
    #: A running coroutine the worker was asked to cancel (``protocol.cancel``).
    cancelling: bool = False


@dataclass(slots=True)
class WorkerProcess:
    """One worker process and its pipes."""

    proc: subprocess.Popen[bytes]
    name: str  # the leased_by value of its jobs
    to_worker: int
    from_worker: int
    reader: protocol.Reader = field(default_factory=protocol.Reader)
    #: Bytes for the worker that its pipe has not taken yet (see ``Pool.send``).
    outbox: bytearray = field(default_factory=bytearray)
    ready: bool = False
    retiring: bool = False
    #: The jobs it runs, by (id, attempt): one sync job alone, or up to
    #: ``async_concurrency`` coroutines (see ``Dispatcher.admit``).
    running: dict[tuple[int, int], Assignment] = field(default_factory=dict)
    #: Jobs sent ahead (prefetched), in the order it will begin them as ``running`` has room.
    backlog: deque[Assignment] = field(default_factory=deque)
    last_seen: float = field(default_factory=time.monotonic)
    done: int = 0
    #: Moving average of its recent jobs' run times: prefetch only feeds quick workers.
    pace: float = 0.1
    #: Revokes on their way, not yet answered; nothing more is sent ahead until the answers.
    revoking: int = 0
    #: Why its messages can no longer be read (it broke the protocol); None while healthy.
    broken: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def idle(self) -> bool:
        return self.ready and not self.retiring and not self.running

    @property
    def busy(self) -> bool:
        return bool(self.running) or bool(self.backlog)

    @property
    def coroutines(self) -> bool:
        """It runs coroutines (a sync job always runs alone)."""
        for a in self.running.values():
            return a.coro
        return False

    def oldest(self) -> Assignment | None:
        """The running job it began first (None when none runs)."""
        for a in self.running.values():
            return a
        return None

    def assignments(self) -> list[Assignment]:
        """Every job this worker holds: the running ones first, then its backlog."""
        return [*self.running.values(), *self.backlog]

    def rss(self) -> int:
        """Resident memory in bytes (0 when unknown)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "worker died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"worker died: signal {-code} ({name})"
    return f"worker died: exit code {code}"


class Pool:
    """Starts workers for an app spec; the supervisor drives everything else."""

    def __init__(self, app_spec: str, prefix: str,
                 frame_limit: int = protocol.MAX_FRAME, log_level: int | None = None,
                 async_concurrency: int = 16) -> None:
        self.app_spec = app_spec
        self.prefix = prefix
        self.frame_limit = frame_limit
        #: Tasks' records under this level are not even made (default: this process's).
        self.log_level = (logging.getLogger().getEffectiveLevel() if log_level is None
                          else log_level)
        self.workers: dict[int, WorkerProcess] = {}
        self._env = dict(os.environ, LITEJOBS_SYS_PATH=json.dumps(sys.path),
                         LITEJOBS_LOG_LEVEL=str(self.log_level),
                         LITEJOBS_ASYNC_CONCURRENCY=str(async_concurrency))

    def spawn(self) -> WorkerProcess:
        down_r, down_w = os.pipe()  # supervisor → worker
        up_r, up_w = os.pipe()  # worker → supervisor
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, self.app_spec, str(down_r), str(up_w)],
                pass_fds=(down_r, up_w),
                env=self._env,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(down_w)  # no worker: none of its pipes may stay open
            os.close(up_r)
            raise
        finally:
            os.close(down_r)
            os.close(up_w)
        os.set_blocking(up_r, False)
        os.set_blocking(down_w, False)
        with contextlib.suppress(OSError, AttributeError):
            # Room for a few jobs of the largest payload, so a send rarely waits at all.
            fcntl.fcntl(down_w, fcntl.F_SETPIPE_SZ, 1 << 20)
        os.set_inheritable(down_w, False)
        os.set_inheritable(up_r, False)
        w = WorkerProcess(proc, f"{self.prefix}:w{proc.pid}", down_w, up_r,
                          reader=protocol.Reader(self.frame_limit))
        self.workers[proc.pid] = w
        return w

    def send(self, w: WorkerProcess, data: bytes) -> bool:
        """Queue a message and write what the pipe takes now; False when the worker is gone
        (it will be reaped). Never blocks: a worker busy writing a large result to us, or a
        frozen one, would otherwise deadlock the supervisor on a full pipe."""
        if w.to_worker < 0:
            return False
        w.outbox += data
        return self.flush(w)

    def flush(self, w: WorkerProcess) -> bool:
        """Write as much of ``w.outbox`` as the pipe takes; False when the worker is gone."""
        if w.to_worker < 0:
            return False
        try:
            while w.outbox:
                n = os.write(w.to_worker, w.outbox)
                del w.outbox[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        return True

    def read(self, w: WorkerProcess) -> list[dict[str, Any]]:
        """Every complete message the worker has sent; ``[]`` when none is pending. A worker
        that broke the protocol gets ``broken`` set (end it: nothing more it says can be
        trusted); the messages before the bad one are still returned."""
        if w.from_worker < 0 or w.broken is not None:
            return []
        chunks: list[bytes] = []
        try:
            while True:
                chunk = os.read(w.from_worker, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass
        if not chunks:
            return []
        out: list[dict[str, Any]] = []
        try:
            frames = w.reader.feed(b"".join(chunks) if len(chunks) > 1 else chunks[0])
            if frames:
                w.last_seen = time.monotonic()
            for payload in frames:
                msg = protocol.decode_report(payload)
                if msg is not None:
                    out.append(msg)
        except protocol.ProtocolError as exc:
            w.broken = w.broken or str(exc)
        return out

    def retire(self, w: WorkerProcess) -> None:
        """Ask a worker to exit once idle: closing its input ends its read loop."""
        if not w.retiring:
            w.retiring = True
            self._close(w, "to_worker")

    def kill(self, w: WorkerProcess) -> None:
        """End a worker at once (SIGKILL); it is reaped like any other death."""
        w.retiring = True
        with contextlib.suppress(ProcessLookupError):
            w.proc.kill()

    def exited(self) -> list[tuple[WorkerProcess, int]]:
        """Workers that have exited, with their exit codes; the caller reads their last
        messages, then calls ``forget``."""
        out: list[tuple[WorkerProcess, int]] = []
        for w in self.workers.values():
            code = w.proc.poll()
            if code is not None:
                out.append((w, code))
        return out

    def forget(self, w: WorkerProcess) -> None:
        self.workers.pop(w.pid, None)
        self._close(w, "to_worker")
        self._close(w, "from_worker")

    @staticmethod
    def _close(w: WorkerProcess, which: str) -> None:
        fd = getattr(w, which)
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
            setattr(w, which, -1)
