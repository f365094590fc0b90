"""What the conformance tests share: a store of either kind by where it lives, jobs, and
claiming as the supervisor does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litejobs.newjob import NewJob
from litejobs.store import QueueLimits, Store

DEADLINE = 10.0


def open_store(where: str) -> Any:
    if where.startswith("postgresql://"):
        from litejobs.store.postgres import PostgresStore

        return PostgresStore(where)
    return Store(where)


def job(task: str = "t", queue: str = "default", priority: int = 0, args: str = "[]",
        delay: float = 0.0, **more: Any) -> NewJob:
    now = time.time()
    return NewJob(task=task, queue=queue, priority=priority, args=args, kwargs="{}",
                  run_at=now + delay, max_attempts=more.pop("max_attempts", 3),
                  timeout=None, **more)


def enqueue(store: Any, *jobs: NewJob) -> list[int]:
    return [int(r["id"]) for r in store.insert_jobs(list(jobs), time.time())]


def claim(store: Any, workers: list[str], limits: dict[str, int | None] | None = None,
          lease: float = 30.0) -> list[dict[str, Any]]:
    """Claim as the supervisor does (claimer.py): the queues to visit, paused ones left out."""
    limits = limits or {}

    def work(tx: Any) -> list[dict[str, Any]]:
        served = [QueueLimits(name, limits.get(name)) for name, paused in tx.queues()
                  if not paused]
        return list(tx.claim(workers, served, time.time(), lease))

    return list(store.write(work))


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {DEADLINE} s: {what}")
