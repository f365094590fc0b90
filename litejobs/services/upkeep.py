"""Queue upkeep: a queue that only jobs name (enqueued by a process that skipped the queue
row, or rows written outside litejobs) gets its row, so it is listed, paused and served."""

from __future__ import annotations

from litejobs.services import Service
from litejobs.store import Store

__all__ = ["QueueUpkeep"]


class QueueUpkeep(Service):
    name = "queue upkeep"
    interval = 60.0

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def run_once(self, now: float) -> int:
        return int(self.store.write(lambda tx: tx.adopt_orphan_queues()))
