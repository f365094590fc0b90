"""Store operations for operators and the supervisor's checks, against real SQLite files:
manual retry, bulk cancel, a full disk at open, a deleted or replaced database file, and the
typed protocols a second store implements."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import litejobs
import litejobs.store
from litejobs.store import QueueLimits, Store, Tx, protocols
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


# --- D. a database file deleted or replaced under an open connection ------------------------


def test_file_changed_notices_a_deleted_file(app, db_path) -> None:
    """`rm jobs.db` while the store has it open: file_changed says "deleted"; once a producer
    makes a new file at the path, it says "replaced"."""
    store = app.store
    assert store.file_changed() is None  # nothing opened in this thread yet
    job = app.enqueue("basic.add", args=[1, 2])
    assert store.file_changed() is None
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{db_path}{suffix}")
    message = store.file_changed()
    assert message is not None and "deleted" in message and str(db_path) in message, message
    assert store.get_job(job.id) is not None  # the old connection still reads the orphan
    fresh = litejobs.App(db_path)
    assert fresh.enqueue("basic.add", args=[3, 4]).id == 1  # a new, empty file
    message = store.file_changed()
    assert message is not None and "replaced by another file" in message, message
    assert fresh.store.file_changed() is None
    fresh.store.close()


def test_file_changed_notices_a_replaced_file_and_not_its_own_writes(app, db_path,
                                                                     tmp_path) -> None:
    """A restore that renames another file over the path is "replaced"; the store's own
    writes, checkpoints and VACUUM (same inode) are not a change."""
    store = app.store
    app.enqueue_many([litejobs.Prepared("basic.add", (i, i), {}) for i in range(2000)])
    store.checkpoint(truncate=True)
    store.connection().execute("VACUUM")
    assert store.file_changed() is None
    other = tmp_path / "restored.db"
    restored = litejobs.App(other)
    restored.enqueue("basic.add", args=[1, 1])
    restored.store.close()
    os.replace(other, db_path)
    message = store.file_changed()
    assert message is not None and "replaced by another file" in message, message
    store.close()
    # SQLite does not checkpoint a moved file on close: its WAL stays at the path, and the
    # next opener would replay it over the restored file. Whoever restores removes it.
    assert os.path.getsize(f"{db_path}-wal") > 0
    for suffix in ("-wal", "-shm"):
        os.unlink(f"{db_path}{suffix}")
    assert [r["args"] for r in store.list_jobs()] == ["[1,1]"]  # a new connection, new file
    assert store.file_changed() is None


def test_file_changed_in_a_forked_child_is_about_its_own_connection(app, db_path) -> None:
    """A forked child never uses its parent's connection: it has nothing opened yet."""
    app.enqueue("basic.add", args=[1, 2])
    pid = os.fork()
    if pid == 0:
        os._exit(0 if app.store.file_changed() is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- E. the store seam --------------------------------------------------------------------------

STORE_PROTOCOLS = (protocols.Producer, protocols.Reads, protocols.ExplainFacts,
                   protocols.Admin, protocols.Maintenance, protocols.Supervising,
                   protocols.Workflows, protocols.Bells)
TX_PROTOCOLS = (protocols.ProducerTx, protocols.ClaimTx, protocols.OutcomeTx,
                protocols.LeaseTx, protocols.CronTx, protocols.UpkeepTx, protocols.WorkflowTx,
                protocols.WriteTx)
#: Store's own, SQLite-only: no second store has an apsw connection.
SQLITE_ONLY = {"connection"}


def members(protocol: type) -> set[str]:
    return {name for klass in protocol.__mro__ if klass is not object
            for name, value in vars(klass).items()
            if not name.startswith("_") and (callable(value) or name in
                                             getattr(klass, "__annotations__", {}))}


def public_methods(klass: type) -> set[str]:
    return {name for name in dir(klass)
            if not name.startswith("_") and callable(getattr(klass, name))}


def test_store_and_tx_implement_every_protocol(app) -> None:
    """The SQLite Store and its Tx satisfy each protocol a second store must implement, and
    every public operation is declared by one of them (none bypasses the seam)."""
    store = app.store
    assert isinstance(store, Store) and litejobs.store.SqliteStore is Store
    for protocol in STORE_PROTOCOLS:
        assert isinstance(store, protocol), protocol.__name__

    def check(tx: Tx) -> list[str]:
        return [p.__name__ for p in TX_PROTOCOLS if not isinstance(tx, p)]

    assert store.write(check) == []
    declared = set().union(*(members(p) for p in STORE_PROTOCOLS))
    assert public_methods(Store) - SQLITE_ONLY - declared == set()
    assert public_methods(Tx) - members(protocols.WriteTx) == set()
    assert members(protocols.WriteTx) == set().union(*(members(p) for p in TX_PROTOCOLS[:-1]))
