"""An enqueue on PostgreSQL rings the bell in its own statement (issue 16, "Figures"): the
insert's ``pg_notify`` is delivered at its commit, and the App's ring right after it is not
sent again, so one enqueue is one round trip. A ring marker (``c``) written after each step
tells what the step rang: rings arrive in commit order."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from litejobs import App  # noqa: E402
from litejobs.newjob import NewJob  # noqa: E402
from litejobs.store.postgres import PostgresStore  # noqa: E402
from litejobs.store.postgres.bell import PgBellListener  # noqa: E402


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url)
    yield s
    s.close()


@pytest.fixture
def listener(pg_url: str, store: PostgresStore) -> Iterator[PgBellListener]:
    store.stats()  # the schema exists before anyone listens
    ear = PgBellListener(pg_url)
    yield ear
    ear.close()


def heard_before_marker(store: PostgresStore, ear: PgBellListener) -> bytes:
    """Every ring committed before now: a ``c`` is rung last and waited for."""
    store.write(lambda tx: tx.ring(b"c"))
    end = time.monotonic() + 10
    heard = b""
    while not heard.endswith(b"c"):
        left = end - time.monotonic()
        assert left > 0, f"the marker ring never came (heard {heard!r})"
        select.select([ear.fileno()], [], [], left)
        heard += ear.drain()
    return heard[:-1]


def job(now: float, delay: float = 0.0, **more: Any) -> NewJob:
    return NewJob(task="t", queue="default", priority=0, args="[]", kwargs="{}",
                  run_at=now + delay, max_attempts=1, timeout=None, **more)


def test_the_insert_itself_rings_at_its_commit(store: PostgresStore,
                                               listener: PgBellListener) -> None:
    now = time.time()
    store.insert_job(job(now), now)  # the queue unknown yet: the insert's transaction
    assert heard_before_marker(store, listener) == b"q"
    store.insert_job(job(now), now)  # the queue known: one statement in autocommit
    assert heard_before_marker(store, listener) == b"q"
    store.insert_job(job(now, delay=60), now)  # scheduled: look for the next due time
    assert heard_before_marker(store, listener) == b"e"
    store.insert_job(job(now, tags='["a"]'), now)  # tagged: rings after its tags
    assert heard_before_marker(store, listener) == b"q"
    store.insert_jobs([job(now), job(now), job(now, delay=5)], now)
    assert heard_before_marker(store, listener) == b"e"


def test_a_keyed_twin_still_rings(store: PostgresStore, listener: PgBellListener) -> None:
    now = time.time()
    first = store.insert_job(job(now, key="k"), now)
    again = store.insert_job(job(now, key="k"), now)
    assert again["id"] == first["id"]
    assert heard_before_marker(store, listener) == b"qq"


def test_an_enqueue_rings_once_and_the_apps_other_rings_still_go(
        pg_url: str, store: PostgresStore, listener: PgBellListener) -> None:
    app = App(pg_url)
    try:
        @app.task(name="t")
        def t(i: int = 0) -> None: ...

        t.enqueue(1)
        t.enqueue(2)
        assert heard_before_marker(store, listener) == b"qq"  # not "qqqq"
        app.enqueue_many([t.prepare(3), t.prepare(4)])
        assert heard_before_marker(store, listener) == b"q"
        app.pause_queue("default")
        app.resume_queue("default")  # not an enqueue: the App's own ring goes out
        assert heard_before_marker(store, listener) == b"e"
        t.enqueue(5)
        app.ring(b"q")  # a second ring of the same byte is not the enqueue's: it is sent
        assert heard_before_marker(store, listener) == b"qq"
    finally:
        app.store.close()
