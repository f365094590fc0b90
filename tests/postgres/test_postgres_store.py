"""What only the PostgreSQL store has: the server's clock, lost connections, its schema's
identity, a pool per process, and its refusals of what it does not do yet."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from litejobs.errors import StorageError
from litejobs.newjob import NewJob
from litejobs.store.rows import QueueLimits
from tests.postgres.conftest import in_schema

psycopg = pytest.importorskip("psycopg") if not os.environ.get("CI") else __import__("psycopg")

from litejobs.store.postgres import PostgresStore  # noqa: E402  (after the driver's check)

HOUR = 3600.0
_names = itertools.count(1)


def own_name() -> str:
    """An application_name no other client of the shared server has: what a test may end."""
    return f"litejobs-test-{os.getpid()}-{next(_names)}"


def named(url: str, name: str) -> str:
    """``url`` whose connections carry ``name`` (the URL's other parameters kept)."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


@pytest.fixture
def client_name() -> str:
    """The application_name of the test store's connections."""
    return own_name()


@pytest.fixture
def store(pg_url: str, client_name: str) -> Iterator[Any]:
    s = PostgresStore(named(pg_url, client_name))
    yield s
    s.close()


def job(now: float, delay: float = 0.0, **more: Any) -> NewJob:
    return NewJob(task="t", queue="default", priority=0, args="[]", kwargs="{}",
                  run_at=now + delay, max_attempts=3, timeout=None, **more)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


# --- the server's clock -------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-HOUR, HOUR])
def test_a_producers_clock_does_not_matter(store: Any, skew: float) -> None:
    """A producer whose clock is an hour off: its job is due at once, made at the server's
    time; its delays count from the server's now."""
    theirs = time.time() + skew
    now_row = store.insert_job(job(theirs), theirs)
    later_row = store.insert_job(job(theirs, delay=HOUR), theirs)
    now_job, later_job = store.get_job(now_row["id"]), store.get_job(later_row["id"])
    assert now_job["state"] == "queued" and later_job["state"] == "scheduled"
    # this machine is the server's: its clock is the server's, give or take a few seconds
    assert abs(now_job["created_at"] - time.time()) < 30
    assert later_job["run_at"] - now_job["run_at"] == pytest.approx(HOUR, abs=1)
    assert now_row["run_at"] == pytest.approx(now_job["run_at"])  # the row handed back too


def test_a_supervisors_clock_does_not_matter(store: Any) -> None:
    """A supervisor whose clock is an hour ahead promotes nothing early, finds no lease
    expired and claims by the server's clock; one an hour behind claims what is due."""
    now = time.time()
    soon, due = store.insert_jobs([job(now, delay=60), job(now)], now)
    ahead, behind = now + HOUR, now - HOUR
    assert store.write(lambda tx: tx.promote_due(ahead)) == 0
    got = store.write(lambda tx: tx.claim(["w"], [QueueLimits("default")], behind, 30.0))
    assert [r["id"] for r in got] == [due["id"]]
    assert store.write(lambda tx: tx.expired_leases(ahead)) == []
    row = store.get_job(due["id"])
    assert row["lease_until"] - row["started_at"] == pytest.approx(30.0, abs=0.01)
    assert store.get_job(soon["id"])["state"] == "scheduled"


# --- connections --------------------------------------------------------------------------------


def terminate_clients(pg_server: str, name: str) -> int:
    """End the connections named ``name`` (this test's own, never another test's or another
    engineer's on the shared server), as a server restart would; back once they are gone."""
    with psycopg.connect(pg_server, autocommit=True) as admin:
        return int(admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) "
            "FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
            (name,)).fetchone()[0])


def test_lost_connection_is_a_storage_error_and_the_next_call_reconnects(
        store: Any, pg_server: str, client_name: str) -> None:
    now = time.time()
    first = store.insert_job(job(now), now)
    bystander = psycopg.connect(pg_server, autocommit=True)  # another client of the server
    assert terminate_clients(pg_server, client_name) >= 1
    assert bystander.execute("SELECT 1").fetchone() == (1,)  # left alone
    bystander.close()
    with pytest.raises(StorageError) as caught:
        store.get_job(first["id"])
    assert "lost the connection to PostgreSQL" in one_line(caught.value)
    assert store.get_job(first["id"])["id"] == first["id"]  # reconnected
    assert store.insert_job(job(now), now)["id"] > first["id"]
    # the one-statement enqueue (autocommit) too: one line, then a connection that works
    assert terminate_clients(pg_server, client_name) >= 1
    with pytest.raises(StorageError) as caught:
        store.insert_job(job(now), now)
    assert "lost the connection to PostgreSQL" in one_line(caught.value)
    assert store.insert_job(job(now), now)["id"] > first["id"]
    assert store.write(lambda tx: tx.queues()) == [("default", False)]  # in a transaction


def test_a_refused_statement_is_one_line_and_nothing_is_committed(pg_url: str) -> None:
    """An error of the server's that is not a lost connection (here: a lock wait past
    lock_timeout, while another session holds the queue's row) is one StorageError line."""
    from litejobs.store.postgres import PostgresStore

    impatient = PostgresStore(f"{pg_url}%20-clock_timeout%3D200")
    now = time.time()
    impatient.insert_job(job(now), now)
    with psycopg.connect(pg_url) as other:
        other.execute("SELECT * FROM queues WHERE name = 'default' FOR UPDATE")
        with pytest.raises(StorageError) as caught:
            impatient.write(lambda tx: tx.claim(["w"], [QueueLimits("default", 1)], now, 30.0))
        assert "refused the call" in one_line(caught.value)
        assert "lock timeout" in str(caught.value)
    assert impatient.stats()["states"]["queued"] == 1  # the claim left nothing behind
    impatient.close()


def test_unreachable_server_is_one_line(unused_port: int) -> None:
    from litejobs.store.postgres import PostgresStore

    s = PostgresStore(f"postgresql://u:secret@127.0.0.1:{unused_port}/x", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        s.queue_list()
    text = one_line(caught.value)
    assert "cannot connect to PostgreSQL" in text and "refused" in text
    assert "secret" not in text and "***" in text
    assert time.monotonic() - started < 10
    s.close()


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_forked_child_opens_its_own_pool(store: Any) -> None:
    now = time.time()
    store.insert_job(job(now), now)
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the parent's left alone
        code = 1
        try:
            store.insert_job(job(time.time()), time.time())
            code = 0 if store.stats()["states"]["queued"] == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.stats()["states"]["queued"] == 2  # the parent's connection still works


# --- the bell (LISTEN/NOTIFY) ------------------------------------------------------------------


def wait_ring(listener: Any) -> bytes:
    """What a listener hears next, waiting on its socket as a supervisor's loop does."""
    import select

    end = time.monotonic() + 10
    heard = b""
    while not heard and time.monotonic() < end:
        select.select([listener.fileno()], [], [], max(0.0, end - time.monotonic()))
        heard = listener.drain()
    return heard


def test_a_ring_wakes_a_listener_at_commit_only(store: Any, pg_url: str,
                                                pg_server: str) -> None:
    from litejobs.store.postgres.bell import PgBellListener
    from tests.postgres.conftest import in_schema

    listener = PgBellListener(pg_url)
    store.write(lambda tx: tx.ring(b"q"))
    assert wait_ring(listener) == b"q"

    def ring_then_fail(tx: Any) -> None:
        tx.ring(b"e")
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        store.write(ring_then_fail)
    with psycopg.connect(pg_server, autocommit=True) as conn:  # another store's schema
        conn.execute("CREATE SCHEMA other_store")
    try:
        other = PostgresStore(in_schema(pg_server, "other_store"))
        other.write(lambda tx: tx.ring(b"e"))
        other.close()
        store.write(lambda tx: tx.ring(b"c"))
        # in commit order: neither the rolled-back ring nor the other store's came first
        assert wait_ring(listener) == b"c"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute("DROP SCHEMA other_store CASCADE")
    listener.close()


def test_a_listener_that_lost_its_connection_says_look_again(store: Any,
                                                              pg_server: str,
                                                              pg_url: str) -> None:
    from litejobs.store.postgres.bell import PgBellListener

    name = own_name()
    listener = PgBellListener(named(pg_url, name))
    bystander = PgBellListener(pg_url)  # another listener: its connection is left alone
    assert terminate_clients(pg_server, name) == 1
    assert wait_ring(listener) == b"e"  # it came back: rings may have been missed
    store.write(lambda tx: tx.ring(b"q"))
    assert wait_ring(listener) == b"q"
    assert wait_ring(bystander) == b"q"  # not "e": it never lost its connection
    listener.close()
    bystander.close()


# --- the schema's identity ------------------------------------------------------------------------


def test_a_newer_schema_is_refused(store: Any, pg_url: str) -> None:
    from litejobs.store.postgres import PostgresStore

    store.queue_list()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE litejobs_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StorageError) as caught:
        PostgresStore(pg_url).queue_list()
    assert "newer litejobs" in one_line(caught.value)


def test_another_programs_jobs_table_is_left_alone(pg_server: str) -> None:
    from litejobs.store.postgres import PostgresStore

    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS foreign_app CASCADE")
        conn.execute("CREATE SCHEMA foreign_app")
        conn.execute("CREATE TABLE foreign_app.jobs (id int, title text)")
    try:
        with pytest.raises(StorageError) as caught:
            PostgresStore(in_schema(pg_server, "foreign_app")).queue_list()
        assert "not litejobs's" in one_line(caught.value)
        with psycopg.connect(pg_server) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables "
                                  "WHERE schemaname = 'foreign_app'").fetchone()[0]
        assert tables == 1  # nothing created beside it
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute("DROP SCHEMA foreign_app CASCADE")


def test_illegal_transition_refused_by_the_schema(store: Any, pg_url: str) -> None:
    now = time.time()
    row = store.insert_job(job(now), now)
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.RaiseException,
                                                        match="illegal state transition"):
        conn.execute("UPDATE jobs SET state = 'succeeded' WHERE id = %s", (row["id"],))


# --- what it does not do yet, refused rather than ignored -----------------------------------------


def test_a_flow_keys_rate_is_taken_no_longer_refused(store: Any) -> None:
    # (refused until the claim held flow keys' rates: tests/postgres/test_flow_races.py)
    now = time.time()
    row = store.insert_job(job(now, concurrency_key="k", flow_rate=5, flow_period=1.0), now)
    got = store.get_job(row["id"])
    assert (got["flow_rate"], got["flow_period"], got["state"]) == (5, 1.0, "queued")


def test_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from litejobs.store.postgres import PostgresStore

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError) as caught:
        PostgresStore("postgresql://u@h/db")
    assert "pip install 'litejobs[postgres]'" in one_line(caught.value)
