"""The supervisor's claim runs with generic plans (issue 16, "Figures": pickup latency): the
queues-to-visit read sets ``plan_cache_mode`` for its own transaction only, so the prepared
claim is not re-planned at each execution, while every other transaction on the pooled
connection (the dashboard's reads of skewed ``state = %s``) keeps the server's default."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from litejobs.newjob import NewJob
from litejobs.store.postgres import PostgresStore
from litejobs.store.rows import QueueLimits

NOW = 1.0e9  # queued, not scheduled


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url, max_size=1)  # one connection: the next transaction reuses it
    yield s
    s.close()


def plan_mode(conn: Any) -> str:
    return str(conn.execute("SELECT current_setting('plan_cache_mode') AS m").fetchone()["m"])


def test_claim_transaction_uses_generic_plans_and_only_it(store: PostgresStore) -> None:
    default = store._transaction(plan_mode)
    store.write(lambda tx: [tx.insert(NewJob(task="t", queue=q, priority=0, args="[]",
                                             kwargs="{}", run_at=NOW, max_attempts=1,
                                             timeout=None), NOW) for q in ("a", "b")])
    seen: list[str] = []

    def work(tx: Any) -> list[Any]:
        served = [QueueLimits(name) for name, paused in tx.queues() if not paused]
        rows = list(tx.claim(["w0", "w1", "w2"], served, time.time(), 30.0))
        seen.append(plan_mode(tx.conn))
        return rows

    for _ in range(7):  # past psycopg's prepare threshold (5): the claim is a prepared one
        rows = store.write(work)
    assert seen == ["force_generic_plan"] * 7
    assert rows == []  # both jobs went to the first claim
    assert store._transaction(plan_mode) == default  # transaction-local: the pool's next user
    assert store._statement(plan_mode) == default


def test_claim_after_generic_plans_is_exact(store: PostgresStore) -> None:
    """Generic plans change no result: priorities across queues and one job per worker."""
    def new(queue: str, priority: int) -> NewJob:
        return NewJob(task="t", queue=queue, priority=priority, args="[]", kwargs="{}",
                      run_at=NOW, max_attempts=1, timeout=None)

    jobs = [(q, p) for q in ("a", "b", "c") for p in (0, 5, 9)] * 2
    store.write(lambda tx: [tx.insert(new(q, p), NOW) for q, p in jobs])
    got: list[int] = []

    def work(tx: Any) -> list[Any]:
        served = [QueueLimits(name) for name, paused in tx.queues() if not paused]
        return list(tx.claim(["w0", "w1"], served, time.time(), 30.0))

    while rows := store.write(work):
        assert len(rows) <= 2
        assert len({r["leased_by"] for r in rows}) == len(rows)
        got.extend(int(r["priority"]) for r in rows)
    assert got == sorted(got, reverse=True) and len(got) == len(jobs)

