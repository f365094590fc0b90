"""What the conformance tests share: a store of either kind by where it lives, jobs, and
claiming as the supervisor does."""

from __future__ import annotations

import multiprocessing
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


def race(target: Callable[..., None], where: str, each: list[tuple[Any, ...]],
         timeout: float = 60, gate: str = "barrier") -> list[Any]:
    """Run ``target(where, start, out, *args)`` in a spawned process per ``args`` of ``each``,
    released together by ``start`` (a Barrier of them all, each process waiting at it when
    ready; or, with ``gate="event"``, an Event set once they are started), and return what
    each put on ``out``, in the order they came. Every process must exit cleanly."""
    ctx = multiprocessing.get_context("spawn")
    start: Any = (ctx.Barrier(len(each), timeout=60) if gate == "barrier" else ctx.Event())
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=target, args=(where, start, out, *args)) for args in each]
    for p in procs:
        p.start()
    if gate == "event":
        start.set()
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0, (f"{target.__name__} exited with {p.exitcode}", results)
    return results
