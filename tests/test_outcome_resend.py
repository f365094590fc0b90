"""An outcome written twice, and a rescue racing the outcome, on both stores (the
``database`` fixture).

The many-hosts chaos test once found a ``stale`` row for attempt 1 of a job that succeeded at
attempt 1. Its cause: a rescuer on PostgreSQL read the job as running with its lease ended,
the supervisor holding it (stalled until then by a frozen host's lock, released at the same
thaw) recorded its success, and the rescuer's failure of that attempt, refused, was written
as a late report "after losing its lease". The rescue now locks the rows it read (as SQLite's
write lock does), and a refused outcome that is its attempt's own outcome written again (the
job succeeded at that attempt, or the row holds this failure) records nothing: a supervisor
whose COMMIT reached the server but whose answer was lost sends its batch again, and that
second pass is the same case. A report that really came late, after a rescue ended the
attempt, is still recorded ``stale``, once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import litejobs
from litejobs import maintenance
from litejobs.store import QueueLimits
from tests.conftest import wait_for

DEFAULT = [QueueLimits("default")]
LEASE = 30.0


@pytest.fixture
def app(database: str) -> litejobs.App:
    return litejobs.App(database)


def claim(app: litejobs.App, n: int = 1, lease: float = LEASE) -> list[dict[str, Any]]:
    now = time.time()
    rows = app.store.write(lambda tx: tx.claim([f"sup:1:w{i}" for i in range(n)], DEFAULT,
                                               now, lease))
    assert len(rows) == n, rows
    return rows


def outcomes(app: litejobs.App, job_id: int) -> list[tuple[int, str]]:
    return [(a.attempt, a.outcome) for a in app.store.attempts(job_id)]


def test_a_success_written_twice_is_a_duplicate_not_stale(app: litejobs.App) -> None:
    job = app.enqueue("t.work")
    claim(app)
    now = time.time()
    assert app.store.write(lambda tx: tx.succeed(job.id, 1, "7", "sup:1:w0", now, now))
    # the resend: refused (nothing is written twice), and no ``stale`` row for attempt 1
    assert not app.store.write(lambda tx: tx.succeed(job.id, 1, "7", "sup:1:w0", now, now))
    assert outcomes(app, job.id) == [(1, "succeeded")]
    assert job.result(timeout=0) == 7


def test_a_batch_of_successes_written_twice_is_a_duplicate_not_stale(
        app: litejobs.App) -> None:
    jobs = [app.enqueue("t.work") for _ in range(3)]
    rows = claim(app, 3)
    now = time.time()
    batch = [(r["id"], r["attempt"], "1", r["leased_by"], now, now) for r in rows]
    assert app.store.write(lambda tx: tx.succeed_many(batch)) == 3
    assert app.store.write(lambda tx: tx.succeed_many(batch)) == 0
    for job in jobs:
        assert outcomes(app, job.id) == [(1, "succeeded")], job.id


@pytest.mark.parametrize("retry", [True, False], ids=["retried", "final"])
def test_a_failure_written_twice_is_a_duplicate_not_stale(app: litejobs.App,
                                                          retry: bool) -> None:
    job = app.enqueue("t.work")
    claim(app)
    now = time.time()

    def fail(tx: Any) -> bool:
        return bool(tx.fail(job.id, 1, "ValueError: boom", "tb", "sup:1:w0", now, now,
                            now + 60 if retry else None))

    assert app.store.write(fail)
    assert not app.store.write(fail)
    [attempt] = app.store.attempts(job.id)
    assert (attempt.attempt, attempt.outcome, attempt.error) == (1, "failed", "ValueError: boom")
    assert job.refresh().state.value == ("scheduled" if retry else "failed")


def test_a_rescue_that_lost_its_race_to_the_success_records_nothing(
        app: litejobs.App) -> None:
    """The rescuer read the job as running with its lease ended; the supervisor holding it
    recorded its success first. The rescuer's failure of that same attempt is refused and
    must not mark the successful attempt ``stale``."""
    job = app.enqueue("t.work")
    claim(app)
    now = time.time()
    assert app.store.write(lambda tx: tx.succeed(job.id, 1, "7", "sup:1:w0", now, now))
    assert not app.store.write(lambda tx: tx.fail(
        job.id, 1, "WorkerDied: its lease expired (the worker or its supervisor stopped "
        "renewing it)", None, "sup:1:w0", now, now + 1, now + 2, crashed=True))
    assert outcomes(app, job.id) == [(1, "succeeded")]


@pytest.mark.parametrize("late", ["success", "failure"])
def test_a_report_after_a_rescue_is_still_stale_and_recorded_once(app: litejobs.App,
                                                                  late: str) -> None:
    job = app.enqueue("t.work")
    claim(app, lease=0.05)  # ends on the store's clock at once
    wait_for(lambda: app.store.write(lambda tx: maintenance.rescue_expired(
        tx, time.time(), {}, crash_limit=50)), 10, "the lease to run out and the rescue")
    [rescued] = app.store.attempts(job.id)
    assert rescued.outcome == "failed" and "its lease expired" in str(rescued.error)
    now = time.time()

    def report(tx: Any) -> bool:
        if late == "success":
            return bool(tx.succeed(job.id, 1, "7", "sup:1:w0", now, now))
        return bool(tx.fail(job.id, 1, "ValueError: late", None, "sup:1:w0", now, now, None))

    assert not app.store.write(report)
    assert not app.store.write(report)  # the late report sent twice
    [stale] = app.store.attempts(job.id)
    assert stale.outcome == "stale", stale
    error = str(stale.error)
    assert error.startswith("WorkerDied: its lease expired"), error
    assert error.count("stale: attempt 1 reported") == 1, error
    assert job.refresh().state.value in ("scheduled", "queued")


class _PausedAfterRead:
    """A rescue's transaction that runs ``between`` right after it read expired leases (if
    any): another writer comes in there."""

    def __init__(self, tx: Any, between: Any) -> None:
        self.tx = tx
        self.between = between

    def expired_leases(self, now: float, limit: int = 500) -> list[Any]:
        rows = list(self.tx.expired_leases(now, limit))
        if rows:
            self.between(self.tx)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)


@pytest.mark.parametrize("late", ["renewal", "success"])
def test_a_renewal_or_success_racing_a_rescue_learns_it_lost_the_lease(
        app: litejobs.App, database: str, late: str) -> None:
    """A supervisor stalled past its lease (a host frozen, then thawed) renews it or records
    the job's success while another supervisor rescues the job. Either may win, not both: the
    job rescued while its renewal was told the lease is kept would run on two hosts at once
    (until the next renewal); a success taken while the rescue goes on made the many-hosts
    chaos test's ``stale`` row for attempt 1 of a job that succeeded at attempt 1. SQLite's
    rescue holds the file's write lock from its read on; PostgreSQL's locks the rows it read."""
    if not database.startswith("postgresql"):
        pytest.skip("SQLite: the rescue holds the file's write lock from its read on, so no "
                    "writer can come between (see test_store's rescue tests)")
    import psycopg

    job = app.enqueue("t.work")
    claim(app, lease=0.05)  # its lease ends at once, on the server's clock
    told: list[Any] = []
    threads: list[threading.Thread] = []

    def report() -> None:
        now = time.time()
        if late == "renewal":
            told.append(app.store.write(lambda tx: tx.renew([(job.id, 1)], now + 30)))
        else:
            told.append(app.store.write(lambda tx: tx.succeed(job.id, 1, "7", "sup:1:w0", now,
                                                              now)))

    def between(tx: Any) -> None:
        me = tx.conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        threads.append(threading.Thread(target=report))
        threads[0].start()
        with psycopg.connect(database, autocommit=True) as watch:
            # it commits (nothing held the row) or waits for this rescue's lock
            wait_for(lambda: told or watch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (me,)).fetchone(), 10, f"the {late} to commit or to wait for the rescue")

    def rescue(tx: Any) -> int:
        return maintenance.rescue_expired(_PausedAfterRead(tx, between), time.time(), {},
                                          crash_limit=50)

    wait_for(lambda: app.store.write(rescue), 10, "the lease to run out and the rescue")
    threads[0].join(10)
    # the rescue took the job: what came between it must hear that the lease was lost
    history = outcomes(app, job.id)
    if late == "renewal":
        assert told == [[(job.id, 1)]], (told, history)
        assert history == [(1, "failed")]
    else:
        assert told == [False], (told, history)
        assert history == [(1, "stale")]
    assert job.refresh().state.value in ("scheduled", "queued")
