"""Store operations for operators and the supervisor's checks, against real SQLite files:
manual retry, bulk cancel, a full disk at open, a deleted or replaced database file, and the
typed protocols a second store implements."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import litejobs
from litejobs.store import QueueLimits, Store
from tests.conftest import REPO, JobLog, alive, clean_env, wait_for

LEASE = 30.0


def claim(store: Store, now: float, workers: int = 1) -> list[dict]:
    """One job for each of ``workers`` workers."""
    names = [f"sup:w{n}" for n in range(workers)]
    return store.write(lambda tx: tx.claim(names, [QueueLimits("default")], now, LEASE))


# --- A. a manual retry of an expired job ------------------------------------------------------


def _expired(app: litejobs.App, n: int = 1) -> tuple[list[int], float]:
    ids = [app.enqueue("basic.add", args=[i, 0], expires=5).id for i in range(n)]
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


# --- B. bulk cancel -----------------------------------------------------------------------------


def test_cancel_many_cancels_exactly_the_given_pending_and_running_jobs(app, tasks) -> None:
    """cancel_many: the listed scheduled, queued and running jobs end cancelled (the running
    one with an "interrupted" attempt); terminal and unlisted jobs are untouched."""
    store = app.store
    done = tasks.add.enqueue(1, 1)
    running = tasks.add.enqueue(2, 2)
    rows = claim(store, 1e12)
    assert {r["id"] for r in rows} == {done.id}
    assert store.write(lambda tx: tx.succeed(done.id, 1, "2", "sup:w0", 1.0, 2.0))
    (row,) = claim(store, 1e12)
    assert row["id"] == running.id
    queued = [j.id for j in app.enqueue_many([tasks.add.prepare(i, 0) for i in range(1500)])]
    scheduled = [j.id for j in app.enqueue_many(
        [tasks.add.options(delay=3600).prepare(i, 0) for i in range(1500)])]
    listed = [done.id, running.id, *queued[:1000], *scheduled[500:]]
    now = 1e12 + 5
    assert store.cancel_many(listed, "cancelled", now) == 1 + 1000 + 1000
    states = {r["id"]: r["state"] for r in store.list_jobs(limit=10_000)}
    cancelled = {i for i, s in states.items() if s == "cancelled"}
    assert cancelled == {running.id, *queued[:1000], *scheduled[500:]}
    assert states[done.id] == "succeeded"
    assert {states[i] for i in queued[1000:]} == {"queued"}
    assert {states[i] for i in scheduled[:500]} == {"scheduled"}
    assert [(a.outcome, a.error) for a in store.attempts(running.id)] == [
        ("interrupted", "cancelled")]
    assert store.get_job(running.id)["leased_by"] is None
    # a second pass finds nothing left to cancel
    assert store.cancel_many(listed, "cancelled", now) == 0


def test_bulk_cancel_from_the_cli_stops_the_running_job(start_supervisor, app, tasks, db_path,
                                                        joblog: JobLog) -> None:
    """`litejobs cancel --queue mail -y` on 2,500 jobs: exactly the mail queue's pending and
    running jobs end cancelled, the running one's worker is stopped (the bell), other queues
    and finished jobs are untouched."""
    sup = start_supervisor(workers=1)
    mail = SimpleNamespace(add=tasks.add.options(queue="mail"),
                           logged=tasks.logged.options(queue="mail"))
    finished = mail.add.enqueue(1, 1)
    assert finished.result(timeout=15) == 2
    long = mail.logged.enqueue(str(joblog), 60)
    (start,) = wait_for(lambda: joblog.starts(long.id), 15, "the long job to start",
                        details=sup.output)
    pending = app.enqueue_many([mail.add.prepare(i, 0) for i in range(1500)]
                               + [mail.add.options(delay=3600).prepare(i, 0)
                                  for i in range(1000)])
    other = app.enqueue_many([tasks.add.options(queue="other", delay=3600).prepare(i, 0)
                              for i in range(300)])
    proc = subprocess.run([sys.executable, "-m", "litejobs", "cancel", "--database",
                           str(db_path), "--queue", "mail", "-y"], cwd=REPO,
                          env=clean_env(db_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "cancel: 2501 job(s)", proc.stdout
    wait_for(lambda: not alive(start["pid"]), 10, "the cancelled job's worker to be stopped",
             details=sup.output)
    states = {r["id"]: r["state"] for r in app.store.list_jobs(limit=10_000)}
    assert {states[j.id] for j in [long, *pending]} == {"cancelled"}
    assert {states[j.id] for j in other} == {"scheduled"}
    assert states[finished.id] == "succeeded"
    assert [a.outcome for a in long.attempts()] == ["interrupted"]
    assert joblog.ends(long.id) == []
    assert tasks.add.enqueue(2, 2).result(timeout=15) == 4  # the pool was refilled
    assert sup.running()
