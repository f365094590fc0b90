"""Rescuer: running jobs whose supervisor is gone, or whose lease expired, go back to run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litejobs import maintenance
from litejobs.services import Service
from litejobs.store import Store, Tx
from litejobs.task import Task

__all__ = ["Rescuer"]

#: Supervisor rows not heard from for this long are deleted.
FORGET_AFTER = 86400.0


class Rescuer(Service):
    name = "rescuer"

    def __init__(self, store: Store, supervisor: str, tasks: Mapping[str, Task[Any, Any]],
                 crash_limit: int, lease: float) -> None:
        super().__init__()
        self.store = store
        self.supervisor = supervisor
        self.tasks = tasks
        self.crash_limit = crash_limit
        self.lease = lease
        self.interval = max(1.0, lease / 4)

    def run_once(self, now: float) -> int:
        supervisors = self.store.supervisors()
        # Heartbeats and leases read back are the store's times (a PostgreSQL server's
        # clock): silence and a rescued attempt's times are judged on that clock.
        forget_before = now - FORGET_AFTER  # (a distance from this host's clock)
        now += self.store.clock_offset()

        def work(tx: Tx) -> int:
            n = maintenance.rescue_dead_supervisors(tx, now, self.supervisor, self.tasks,
                                                    self.crash_limit, supervisors,
                                                    lease=self.lease)
            n += maintenance.rescue_expired(tx, now, self.tasks, self.crash_limit)
            tx.forget_supervisors_before(forget_before)
            return n

        return int(self.store.write(work))

    def after(self, count: int) -> float:
        # rescue_expired takes one batch a pass: a full one means more may be waiting
        return 0.0 if count >= 500 else self.interval
