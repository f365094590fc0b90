"""Heartbeat: this supervisor's row says it is alive (host, pid, queues, when last seen)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from litejobs.services import Service
from litejobs.store import Store

__all__ = ["Heartbeat"]


class Heartbeat(Service):
    name = "heartbeat"
    interval = 5.0

    def __init__(self, store: Store, supervisor: str, started: float,
                 queues: Sequence[str] | None) -> None:
        super().__init__()
        self.store = store
        self.supervisor = supervisor
        self.hostname = socket.gethostname()
        self.started = started
        self.queues = ",".join(queues or [])

    def run_once(self, now: float) -> int:
        self.store.write(lambda tx: tx.heartbeat(self.supervisor, self.hostname, os.getpid(),
                                                 self.started, now, self.queues))
        return 1

    def forget(self) -> None:
        """This supervisor stops: its row goes."""
        self.store.write(lambda tx: tx.forget_supervisor(self.supervisor))
