"""Heartbeat: this supervisor's row says it is alive (host, pid, queues, when last seen) and
what each of its workers is doing (``supervisors.workers``, for the dashboard and /metrics)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from litejobs.pool import Pool
from litejobs.services import Service
from litejobs.store import Store, Tx

__all__ = ["Heartbeat", "worker_states"]


def worker_states(pool: Pool) -> list[dict[str, Any]]:
    """One object per worker of ``pool``, as ``supervisors.workers`` holds them: ``name`` (as
    attempts name it), ``pid``, ``state`` (busy, idle, starting), its running ``job``, ``task``
    and when it ``started_at``, its ``rss`` (bytes, None when unknown), ``jobs_done``."""
    out: list[dict[str, Any]] = []
    for w in pool.workers.values():
        a = w.oldest()
        state = "busy" if a is not None else ("idle" if w.ready else "starting")
        out.append({"name": w.name, "pid": w.pid, "state": state,
                    "job": None if a is None else a.id, "task": None if a is None else a.task,
                    "started_at": None if a is None else a.started, "rss": w.rss() or None,
                    "jobs_done": w.done})
    return out


class Heartbeat(Service):
    name = "heartbeat"
    interval = 5.0

    def __init__(self, store: Store, supervisor: str, started: float,
                 queues: Sequence[str] | None,
                 workers: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        super().__init__()
        self.store = store
        self.supervisor = supervisor
        self.hostname = socket.gethostname()
        self.started = started
        self.queues = ",".join(queues or [])
        self.workers = workers  # what each worker does now (see worker_states)

    def run_once(self, now: float) -> int:
        # read before the transaction: /proc reads stay out of the write lock
        workers = self.workers() if self.workers is not None else None

        def beat(tx: Tx) -> None:
            tx.heartbeat(self.supervisor, self.hostname, os.getpid(), self.started, now,
                         self.queues)
            if workers is not None:
                tx.set_workers(self.supervisor, workers)

        self.store.write(beat)
        return 1

    def forget(self) -> None:
        """This supervisor stops: its row goes."""
        self.store.write(lambda tx: tx.forget_supervisor(self.supervisor))
