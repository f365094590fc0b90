"""Checkpointer: the WAL is copied back into the database file every few seconds, and
truncated once it has grown large (a burst of enqueues), so it never grows without bound."""

from __future__ import annotations

from litejobs.services import Service
from litejobs.store import Store

__all__ = ["Checkpointer"]

WAL_TRUNCATE = 64 * 1024 * 1024


class Checkpointer(Service):
    name = "checkpointer"
    interval = 10.0

    def __init__(self, store: Store) -> None:
        super().__init__(first_in=self.interval)
        self.store = store

    def run_once(self, now: float) -> int:
        pages, _ = self.store.checkpoint(truncate=self.store.wal_size() > WAL_TRUNCATE)
        return int(pages)
