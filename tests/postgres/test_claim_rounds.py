"""The PostgreSQL claim's round trips (issue 16, "Figures"): a cycle whose queues hold no
queued job of a concurrency key skips the keyed look (``queues()`` says which), and a queue
that does hold one still has its keyed jobs taken, by priority and within the key's limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from litejobs.newjob import NewJob
from litejobs.store.postgres import PostgresStore
from litejobs.store.rows import QueueLimits

NOW = 1.0e9  # the jobs' run time and the insert's now: queued, not scheduled


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url)
    yield s
    s.close()


def job(queue: str, priority: int = 0, ckey: str | None = None) -> NewJob:
    return NewJob(task="t", queue=queue, priority=priority, args="[]", kwargs="{}",
                  run_at=NOW, max_attempts=1, timeout=None, concurrency_key=ckey,
                  concurrency_limit=None if ckey is None else 1)


def claim(store: PostgresStore, workers: int) -> tuple[list[dict[str, Any]], int]:
    """Claim as the supervisor does; returns the rows and how many keyed looks it took."""
    looks = 0

    def work(tx: Any) -> list[dict[str, Any]]:
        nonlocal looks
        keyed = tx._keyed

        def counted(*args: Any, **kwargs: Any) -> list[int]:
            nonlocal looks
            looks += 1
            return list(keyed(*args, **kwargs))

        tx._keyed = counted
        served = [QueueLimits(name) for name, paused in tx.queues() if not paused]
        return list(tx.claim([f"w{i}" for i in range(workers)], served, time.time(), 30.0))

    return store.write(work), looks


def test_no_keyed_look_without_keyed_jobs(store: PostgresStore) -> None:
    store.insert_jobs([job("a"), job("b"), job("a")], NOW)
    rows, looks = claim(store, 2)
    assert len(rows) == 2 and looks == 0


def test_keyed_jobs_are_still_taken_by_priority_and_limit(store: PostgresStore) -> None:
    store.insert_jobs([job("a"), job("b", 5, "k"), job("b", 4, "k"), job("b", 1)], NOW)
    rows, looks = claim(store, 3)
    assert looks == 1
    # the best keyed job first, its twin held back by the key's limit of 1
    assert [(r["queue"], r["priority"]) for r in rows] == [("b", 5), ("b", 1), ("a", 0)]
    rows, looks = claim(store, 3)
    assert rows == [] and looks == 1  # only the key's second job is left: the key is full
