"""Store operations for operators and the supervisor's checks, against real SQLite files:
manual retry, bulk cancel, a full disk at open, a deleted or replaced database file, and the
typed protocols a second store implements."""

from __future__ import annotations

from pathlib import Path

import pytest

import litejobs
from litejobs.store import QueueLimits, Store

LEASE = 30.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def app(db: Path) -> litejobs.App:
    return litejobs.App(db)


def claim(store: Store, now: float, workers: int = 1) -> list[dict]:
    """One job for each of ``workers`` workers."""
    names = [f"sup:w{n}" for n in range(workers)]
    return store.write(lambda tx: tx.claim(names, [QueueLimits("default")], now, LEASE))


# --- A. a manual retry of an expired job ------------------------------------------------------


def _expired(app: litejobs.App, n: int = 1) -> tuple[list[int], float]:
    ids = [app.enqueue("t.work", args=[i], expires=5).id for i in range(n)]
    deadline = max(app.store.get_job(i)["expires_at"] for i in ids)
    assert app.store.write(lambda tx: tx.expire_due(deadline + 1)) == n
    assert all(app.get_job(i).state is litejobs.State.CANCELLED for i in ids)
    return ids, deadline


def test_retry_of_an_expired_job_runs_instead_of_expiring_again(app) -> None:
    """`litejobs retry ID` of an expired job: it is claimed, not expired again at once (the old
    deadline, already past, was kept)."""
    (job_id,), deadline = _expired(app)
    later = deadline + 60
    assert app.store.retry(job_id, 0, later)
    assert app.store.write(lambda tx: tx.expire_due(later)) == 0
    assert app.get_job(job_id).state is litejobs.State.QUEUED
    rows = claim(app.store, later)
    assert [r["id"] for r in rows] == [job_id]


def test_bulk_retry_of_expired_jobs_runs_them(app) -> None:
    """`litejobs retry --state cancelled -y` (retry_many): none expires again at once."""
    ids, deadline = _expired(app, 3)
    later = deadline + 60
    assert app.store.retry_many(ids, 0, later) == 3
    assert app.store.write(lambda tx: tx.expire_due(later)) == 0
    assert sorted(r["id"] for r in claim(app.store, later, 3)) == ids
