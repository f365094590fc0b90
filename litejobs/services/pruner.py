"""Pruner: terminal jobs and cron fires older than ``retention`` and per-minute figures older
than ``METRIC_MINUTES`` are deleted, a few small batches a pass, so a large backlog of old rows
never holds the loop (or the write lock) long. The figures' totals are never pruned: they are
Prometheus counters, which must not go down."""

from __future__ import annotations

from collections.abc import Callable

from litejobs import maintenance
from litejobs.services import Service
from litejobs.store import Store, Tx

__all__ = ["Pruner"]

BATCH = 500
#: Batches of each kind a pass; a pass that finds more comes back after ``SOON`` seconds.
BATCHES = 4
SOON = 0.5
#: Seconds the per-minute figures (the dashboard's charts) are kept.
METRIC_MINUTES = 2 * 86400.0


class Pruner(Service):
    name = "pruner"
    interval = 60.0

    def __init__(self, store: Store, retention: float) -> None:
        super().__init__()
        self.store = store
        self.retention = retention
        self.more = False  # the last pass stopped at its bound with rows left

    def run_once(self, now: float) -> int:
        before = now - self.retention
        self.more = False
        jobs = self._batches(lambda tx: maintenance.prune(tx, now, self.retention, BATCH))
        fires = self._batches(lambda tx: tx.prune_cron_fires(before, BATCH))
        runs = self._batches(lambda tx: tx.prune_runs(before, BATCH))  # runs with no step left
        minutes = self._batches(lambda tx: tx.prune_metric_minutes(now - METRIC_MINUTES, BATCH))
        return jobs + fires + runs + minutes

    def _batches(self, delete: Callable[[Tx], int]) -> int:
        total = 0
        for _ in range(BATCHES):
            n = self.store.write(delete)
            total += n
            if n < BATCH:
                return total
        self.more = True
        return total

    def after(self, count: int) -> float:
        return SOON if self.more else self.interval
