"""The store against real SQLite files: transitions, guarded updates, fencing, concurrency,
maintenance batches, and refusing files litejobs must not touch."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import apsw
import pytest

import litejobs
from litejobs import maintenance
from litejobs.job import TERMINAL, TRANSITIONS, State
from litejobs.store import SCHEMA_VERSION, QueueLimits, Store
from tests.conftest import WriteLockHolder, clean_env, release_together

LEASE = 30.0
DEFAULT = [QueueLimits("default")]


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def app(db: Path) -> litejobs.App:
    return litejobs.App(db)


def enqueue(app: litejobs.App, n: int = 1, **options: object) -> list[int]:
    return [app.enqueue("t.work", args=[i], **options).id for i in range(n)]


def claim_one(store: Store, now: float, worker: str = "sup:w1", queue: str = "default") -> dict:
    rows = store.write(lambda tx: tx.claim([worker], [QueueLimits(queue)], now, LEASE))
    assert len(rows) == 1, rows
    return rows[0]


def state_of(store: Store, job_id: int) -> str:
    row = store.get_job(job_id)
    assert row is not None
    return str(row["state"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- transitions -----------------------------------------------------------------------------


def test_transitions_map_is_the_documented_one() -> None:
    expected = {
        # workflows (DESIGN.md's job states): a step waits for its upstream steps
        State.WAITING: {State.QUEUED, State.SCHEDULED, State.CANCELLED, State.SUCCEEDED,
                        State.FAILED},
        State.SCHEDULED: {State.QUEUED, State.CANCELLED},
        State.QUEUED: {State.RUNNING, State.SCHEDULED, State.CANCELLED},
        State.RUNNING: {State.SUCCEEDED, State.SCHEDULED, State.QUEUED, State.FAILED,
                        State.CANCELLED},
        State.SUCCEEDED: set(),
        State.FAILED: {State.QUEUED, State.WAITING},
        State.CANCELLED: {State.QUEUED, State.WAITING},
    }
    assert {s: set(t) for s, t in TRANSITIONS.items()} == expected
    assert set(TRANSITIONS) == set(State)
    assert TERMINAL == {State.SUCCEEDED, State.FAILED, State.CANCELLED}
    assert [s.value for s in State] == [
        "waiting", "scheduled", "queued", "running", "succeeded", "failed", "cancelled"]


def _raw_job(cur: apsw.Cursor, state: str) -> int:
    lease = ("x", 1.0) if state == "running" else (None, None)
    return int(cur.execute(
        "INSERT INTO jobs (task, queue, state, args, kwargs, run_at, scheduled_at, created_at, "
        "max_attempts, attempt, leased_by, lease_until) "
        "VALUES ('t', 'default', ?, '[]', '{}', 0, 0, 0, 5, 1, ?, ?) RETURNING id",
        (state, *lease),
    ).fetchone()[0])


def test_schema_trigger_matches_transitions_map(db: Path) -> None:
    """Every (from, to) pair: the trigger lets exactly the edges of TRANSITIONS through."""
    store = Store(db)
    checked = 0
    for old, new in itertools.permutations(list(State), 2):
        job_id = store.write(lambda tx, old=old: _raw_job(tx.cursor, old.value))
        lease = ("x", 2.0) if new is State.RUNNING else (None, None)

        def move(tx, job_id=job_id, new=new, lease=lease) -> None:
            tx.cursor.execute("UPDATE jobs SET state = ?, leased_by = ?, lease_until = ? "
                              "WHERE id = ?", (new.value, *lease, job_id))

        if new in TRANSITIONS[old]:
            store.write(move)
            assert state_of(store, job_id) == new.value, (old, new)
        else:
            with pytest.raises(apsw.ConstraintError, match="illegal state transition"):
                store.write(move)
            assert state_of(store, job_id) == old.value, (old, new)
        checked += 1
    assert checked == 42  # 7 states x 6 others


def test_illegal_transition_from_succeeded_is_refused_and_rolled_back(app, db) -> None:
    (job_id,) = enqueue(app)
    store = app.store
    now = time.time()
    row = claim_one(store, now)
    assert store.write(lambda tx: tx.succeed(job_id, row["attempt"], "42", "sup:w1", now, now))

    def reopen(tx) -> None:
        tx.cursor.execute("UPDATE jobs SET error = 'touched' WHERE id = ?", (job_id,))
        tx.cursor.execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (job_id,))

    with pytest.raises(apsw.ConstraintError, match="illegal state transition"):
        store.write(reopen)
    job = store.get_job(job_id)
    assert job["state"] == "succeeded"
    assert job["error"] is None  # the whole transaction rolled back


def test_claim_success_path(app) -> None:
    (job_id,) = enqueue(app)
    store = app.store
    now = time.time()
    row = claim_one(store, now, worker="sup:w7")
    assert row["id"] == job_id
    assert row["attempt"] == 1
    assert row["leased_by"] == "sup:w7"
    job = store.get_job(job_id)
    assert job["state"] == "running"
    assert job["lease_until"] == pytest.approx(now + LEASE, abs=1e-3)
    assert job["started_at"] == pytest.approx(now, abs=1e-3)
    # nothing left to claim
    assert store.write(lambda tx: tx.claim(["sup:w2"], DEFAULT, now, LEASE)) == []

    assert store.write(lambda tx: tx.succeed(job_id, 1, '{"ok":1}', "sup:w7", now, now + 1))
    job = store.get_job(job_id)
    assert job["state"] == "succeeded"
    # no lease any more; leased_by keeps the worker that ran the successful attempt
    assert job["lease_until"] is None and job["leased_by"] == "sup:w7"
    assert job["finished_at"] == pytest.approx(now + 1, abs=1e-3)
    assert app.get_job(job_id).result(timeout=0) == {"ok": 1}
    [attempt] = store.attempts(job_id)
    assert (attempt.attempt, attempt.outcome, attempt.worker) == (1, "succeeded", "sup:w7")
    # a second report of the same attempt is refused (the job is no longer running)
    assert not store.write(lambda tx: tx.succeed(job_id, 1, "1", "sup:w7", now, now + 2))
    assert state_of(store, job_id) == "succeeded"


def test_claim_takes_best_first_and_one_per_worker(app) -> None:
    low = app.enqueue("t.low", priority=-5).id
    high = app.enqueue("t.high", priority=50).id
    mid1 = app.enqueue("t.mid", priority=0).id
    mid2 = app.enqueue("t.mid", priority=0).id
    other = app.enqueue("t.other", queue="other", priority=100).id
    now = time.time() + 1
    rows = app.store.write(lambda tx: tx.claim(["a", "b", "c"], DEFAULT, now, LEASE))
    assert [r["id"] for r in rows] == [high, mid1, mid2]
    assert [r["leased_by"] for r in rows] == ["a", "b", "c"]
    assert state_of(app.store, low) == "queued"
    assert state_of(app.store, other) == "queued"


def test_fail_with_retry_in_future_schedules(app) -> None:
    (job_id,) = enqueue(app)
    store = app.store
    now = time.time()
    claim_one(store, now)
    assert store.write(lambda tx: tx.fail(job_id, 1, "ValueError: boom", "tb", "sup:w1", now,
                                          now + 1, retry_at=now + 60))
    job = store.get_job(job_id)
    assert job["state"] == "scheduled"
    assert job["run_at"] == pytest.approx(now + 60, abs=1e-3)
    assert job["error"] == "ValueError: boom"
    assert job["leased_by"] is None
    [a] = store.attempts(job_id)
    assert (a.outcome, a.error, a.traceback) == ("failed", "ValueError: boom", "tb")
    # promote then claim again: attempt 2
    assert store.write(lambda tx: tx.promote_due(now + 61)) == 1
    row = claim_one(store, now + 62)
    assert row["attempt"] == 2


def test_fail_with_retry_due_now_queues(app) -> None:
    (job_id,) = enqueue(app)
    now = time.time()
    claim_one(app.store, now)
    assert app.store.write(lambda tx: tx.fail(job_id, 1, "E", None, "w", now, now, retry_at=now))
    assert state_of(app.store, job_id) == "queued"


def test_fail_for_good(app) -> None:
    (job_id,) = enqueue(app)
    now = time.time()
    claim_one(app.store, now)
    assert app.store.write(lambda tx: tx.fail(job_id, 1, "KeyError: 'x'", None, "w", now, now,
                                              retry_at=None))
    job = app.get_job(job_id)
    assert job.state is State.FAILED
    with pytest.raises(litejobs.JobFailed, match="KeyError"):
        job.result(timeout=0)


def test_interrupt_requeues_without_counting(app) -> None:
    (job_id,) = enqueue(app)
    store = app.store
    now = time.time()
    claim_one(store, now)
    assert store.write(lambda tx: tx.interrupt(job_id, 1, "drained", "sup:w1", now, now + 1))
    job = store.get_job(job_id)
    assert (job["state"], job["interrupts"], job["attempt"]) == ("queued", 1, 1)
    assert job["leased_by"] is None
    [a] = store.attempts(job_id)
    assert (a.outcome, a.error) == ("interrupted", "drained")
    # the interrupt of a stale attempt is refused
    row = claim_one(store, now + 2)
    assert row["attempt"] == 2
    assert not store.write(lambda tx: tx.interrupt(job_id, 1, "late", "w", now, now + 3))
    assert state_of(store, job_id) == "running"


def test_renew_extends_own_lease_and_reports_lost_ones(app) -> None:
    a, b = enqueue(app, 2)
    store = app.store
    now = time.time()
    rows = store.write(lambda tx: tx.claim(["w1", "w2"], DEFAULT, now, LEASE))
    assert {r["id"] for r in rows} == {a, b}
    lost = store.write(lambda tx: tx.renew([(a, 1), (b, 7)], now + 100))
    assert lost == [(b, 7)]
    assert store.get_job(a)["lease_until"] == pytest.approx(now + 100, abs=1e-3)
    assert store.get_job(b)["lease_until"] == pytest.approx(now + LEASE, abs=1e-3)


def test_guarded_updates_need_running(app) -> None:
    (job_id,) = enqueue(app)
    now = time.time()
    # queued, never claimed: no outcome may be recorded
    assert not app.store.write(lambda tx: tx.succeed(job_id, 0, "1", "w", now, now))
    assert not app.store.write(lambda tx: tx.fail(job_id, 0, "E", None, "w", now, now, None))
    assert state_of(app.store, job_id) == "queued"


# --- fencing ---------------------------------------------------------------------------------


def test_stale_attempt_is_fenced(app) -> None:
    (job_id,) = enqueue(app)
    store = app.store
    t0 = time.time()
    first = claim_one(store, t0, worker="supA:w1")
    assert first["attempt"] == 1

    # the first worker freezes; its lease runs out and another supervisor rescues the job
    rescued = store.write(lambda tx: maintenance.rescue_expired(tx, t0 + LEASE + 1, {}, 3))
    assert rescued == 1
    assert state_of(store, job_id) == "queued"

    second = claim_one(store, t0 + LEASE + 2, worker="supB:w1")
    assert second["id"] == job_id
    assert second["attempt"] == 2

    # the frozen worker wakes and reports success: refused, recorded as stale
    ok = store.write(lambda tx: tx.succeed(job_id, 1, '"old"', "supA:w1", t0, t0 + LEASE + 3))
    assert ok is False
    job = store.get_job(job_id)
    assert (job["state"], job["attempt"], job["leased_by"]) == ("running", 2, "supB:w1")
    assert job["result"] is None
    # and its lease renewal is refused too
    assert store.write(lambda tx: tx.renew([(job_id, 1)], t0 + 1000)) == [(job_id, 1)]

    assert store.write(lambda tx: tx.succeed(job_id, 2, '"new"', "supB:w1", t0 + LEASE + 2,
                                             t0 + LEASE + 4))
    job = app.get_job(job_id)
    assert job.state is State.SUCCEEDED
    assert job.result(timeout=0) == "new"
    attempts = store.attempts(job_id)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "stale"), (2, "succeeded")]
    assert "stale" in attempts[0].error
    assert attempts[1].worker == "supB:w1"


def test_stale_failure_after_success_changes_nothing(app) -> None:
    (job_id,) = enqueue(app)
    store = app.store
    t0 = time.time()
    claim_one(store, t0)
    store.write(lambda tx: maintenance.rescue_expired(tx, t0 + LEASE + 1, {}, 3))
    claim_one(store, t0 + LEASE + 2)
    assert store.write(lambda tx: tx.succeed(job_id, 2, "2", "w", t0, t0 + LEASE + 3))
    assert not store.write(lambda tx: tx.fail(job_id, 1, "E", None, "w", t0, t0 + LEASE + 4,
                                              retry_at=None))
    assert state_of(store, job_id) == "succeeded"
    assert [a.outcome for a in store.attempts(job_id)] == ["stale", "succeeded"]


def test_rescue_leaves_live_leases_alone(app) -> None:
    (job_id,) = enqueue(app)
    t0 = time.time()
    claim_one(app.store, t0)
    assert app.store.write(lambda tx: maintenance.rescue_expired(tx, t0 + LEASE - 1, {}, 3)) == 0
    assert state_of(app.store, job_id) == "running"


def _held(store: Store, job_id: int) -> tuple:
    row = store.get_job(job_id)
    assert row is not None
    return (row["state"], row["attempt"], row["crashes"], row["interrupts"])


def test_rescue_counts_a_crash_only_for_the_job_each_worker_ran_first(app) -> None:
    # A worker is sent several jobs at once (prefetch); when its supervisor dies, only the
    # first can have been running. The ones behind it must not be charged a crash or an
    # attempt, or a few supervisor restarts would fail jobs that never ran.
    low = enqueue(app, 3)
    (high,) = enqueue(app, 1, priority=5)
    store = app.store
    t0 = time.time()
    rows = store.write(lambda tx: tx.claim(["supA:1:ab:w1"] * 3, DEFAULT, t0, LEASE))
    assert [r["id"] for r in rows] == [high, *low[:2]]  # sent best first
    (later,) = store.write(lambda tx: tx.claim(["supA:1:ab:w1"], DEFAULT, t0 + 1, LEASE))
    assert later["id"] == low[2]
    (other,) = enqueue(app, 1)
    store.write(lambda tx: tx.claim(["supA:1:ab:w2"], DEFAULT, t0 + 2, LEASE))

    rescued = store.write(lambda tx: maintenance.rescue_expired(tx, t0 + LEASE + 5, {}, 3))
    assert rescued == 5
    assert _held(store, high) == ("queued", 1, 1, 0)  # ran first: a crash
    assert _held(store, other) == ("queued", 1, 1, 0)  # the other worker's only job
    for job_id in [*low[:2], low[2]]:
        assert _held(store, job_id) == ("queued", 1, 0, 1), job_id
        (attempt,) = store.attempts(job_id)
        assert attempt.outcome == "interrupted"
        assert f"behind job {high}" in (attempt.error or "")
        assert "not counted" in (attempt.error or "")
    assert store.attempts(high)[0].outcome == "failed"
    # a number that was handed out is never handed out again
    again = store.write(lambda tx: tx.claim(["supB:1:cd:w1"] * 5, DEFAULT, t0 + LEASE + 6, LEASE))
    assert sorted(r["id"] for r in again) == sorted([high, other, *low])
    assert {r["attempt"] for r in again} == {2}


def test_jobs_sent_ahead_never_reach_crash_limit_or_max_attempts(app) -> None:
    # sent ahead (second in its worker) through more supervisor deaths than crash_limit and
    # max_attempts allow, a job stays pending and still runs, with an attempt of its own
    (behind,) = enqueue(app, 1, retries=0)
    store = app.store
    now = time.time()
    for _ in range(4):
        enqueue(app, 1, priority=9)  # claimed first: the one its worker was running
        store.write(lambda tx: tx.claim(["supA:1:ab:w1"] * 2, DEFAULT, now, LEASE))
        now += LEASE + 1
        # crash_limit 1: the job that was running is failed at once, out of the way
        store.write(lambda tx: maintenance.rescue_expired(tx, now, {}, 1))
    assert _held(store, behind) == ("queued", 4, 0, 4)
    first = store.write(lambda tx: tx.claim(["supB:1:cd:w1"] * 5, DEFAULT, now, LEASE))
    row = next(r for r in first if r["id"] == behind)
    assert row["attempt"] == 5
    assert store.write(lambda tx: tx.succeed(behind, 5, "1", "supB:1:cd:w1", now, now + 1))
    assert state_of(store, behind) == "succeeded"
    assert [a.outcome for a in store.attempts(behind)] == ["interrupted"] * 4 + ["succeeded"]


# --- two processes claiming at once ----------------------------------------------------------

CLAIMER = textwrap.dedent("""
    import json, os, sys, time
    from litejobs.store import QueueLimits, Store

    db, name, go = sys.argv[1:4]
    store = Store(db)
    store.connection()
    with open(go + "." + name, "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never saw the go file")
        time.sleep(0.001)
    queues = [QueueLimits("default")]
    ids = []
    while True:
        rows = store.write(lambda tx: tx.claim([name], queues, time.time(), 300))
        if not rows:
            break
        ids.extend(r["id"] for r in rows)
        time.sleep(0.001)  # "run" the job: a worker does not hold the lock between claims
    print(json.dumps(ids))
""")


def test_processes_claiming_concurrently_never_share_a_job(app, db, tmp_path) -> None:
    n_jobs, n_procs = 400, 4
    app.enqueue_many([litejobs.Prepared("t.work", (i,), {}) for i in range(n_jobs)])
    all_ids = {r["id"] for r in app.store.list_jobs(limit=10_000)}
    assert len(all_ids) == n_jobs
    script = tmp_path / "claimer.py"
    script.write_text(CLAIMER)
    go = tmp_path / "go"
    names = [f"p{i}" for i in range(n_procs)]
    procs = [subprocess.Popen([sys.executable, str(script), str(db), name, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in names]
    outs = release_together(procs, lambda: all(Path(f"{go}.{n}").exists() for n in names), go)
    claimed: dict[str, set[int]] = {}
    for name, p, (out, err) in zip(names, procs, outs, strict=True):
        assert p.returncode == 0, err
        ids = json.loads(out)
        assert len(ids) == len(set(ids)), f"{name} claimed a job twice"
        claimed[name] = set(ids)
    for a, b in itertools.combinations(names, 2):
        assert not claimed[a] & claimed[b], f"{a} and {b} share {claimed[a] & claimed[b]}"
    assert set().union(*claimed.values()) == all_ids
    assert sum(1 for ids in claimed.values() if ids) >= 2  # they really did race
    # the database agrees with what each process saw
    for row in app.store.list_jobs(limit=10_000):
        assert row["state"] == "running" and row["attempt"] == 1
        assert row["id"] in claimed[row["leased_by"]]


# --- maintenance -----------------------------------------------------------------------------


def test_promote_due_uses_the_given_now(app) -> None:
    soon = app.enqueue("t.a", delay=60).id
    later = app.enqueue("t.b", delay=600).id
    store = app.store
    run_at = store.get_job(soon)["run_at"]
    assert state_of(store, soon) == "scheduled"
    assert store.write(lambda tx: tx.promote_due(run_at - 1)) == 0
    assert state_of(store, soon) == "scheduled"
    assert store.next_scheduled() == pytest.approx(run_at, abs=1e-3)
    assert store.write(lambda tx: tx.promote_due(run_at)) == 1
    assert state_of(store, soon) == "queued"
    assert state_of(store, later) == "scheduled"
    assert store.write(lambda tx: tx.promote_due(run_at + 10_000)) == 1
    assert state_of(store, later) == "queued"
    assert store.next_scheduled() is None
    assert store.write(lambda tx: tx.promote_due(run_at + 20_000)) == 0


def test_promote_due_respects_limit(app) -> None:
    enqueue(app, 5, delay=10)
    now = time.time() + 100
    assert app.store.write(lambda tx: tx.promote_due(now, limit=2)) == 2
    assert app.stats()["states"]["queued"] == 2
    assert app.store.write(lambda tx: tx.promote_due(now, limit=10)) == 3
    assert app.stats()["states"]["queued"] == 5


def test_prune_deletes_only_old_terminal_jobs(app) -> None:
    store = app.store
    t0 = time.time()
    done, failed, recent, pending, cancelled = enqueue(app, 5)
    rows = store.write(lambda tx: tx.claim(["a", "b", "c"], DEFAULT, t0, LEASE))
    assert [r["id"] for r in rows] == [done, failed, recent]
    store.write(lambda tx: tx.succeed(done, 1, "1", "a", t0, t0))
    store.write(lambda tx: tx.fail(failed, 1, "E", None, "b", t0, t0, None))
    store.write(lambda tx: tx.succeed(recent, 1, "1", "c", t0, t0 + 5000))
    assert store.cancel(cancelled, "cancelled", t0)
    retention = 3600.0
    now = t0 + retention + 1
    assert store.write(lambda tx: maintenance.prune(tx, now, retention)) == 3
    assert store.get_job(done) is None
    assert store.get_job(failed) is None
    assert store.get_job(cancelled) is None
    assert store.attempts(done) == []  # attempts go with their job
    assert state_of(store, recent) == "succeeded"
    assert state_of(store, pending) == "queued"
    assert store.write(lambda tx: maintenance.prune(tx, now, retention)) == 0
    assert app.get_job(done) is None
    assert store.write(lambda tx: maintenance.prune(tx, t0 + 5000 + retention + 1,
                                                    retention)) == 1
    assert store.get_job(recent) is None


def test_prune_in_batches(app) -> None:
    store = app.store
    t0 = time.time()
    ids = enqueue(app, 5)
    for job_id in ids:
        assert store.cancel(job_id, "cancelled", t0)
    assert store.write(lambda tx: tx.prune(t0 + 1, limit=2)) == 2
    assert store.write(lambda tx: tx.prune(t0 + 1, limit=2)) == 2
    assert store.write(lambda tx: tx.prune(t0 + 1, limit=2)) == 1
    assert store.list_jobs() == []


# --- files litejobs must not touch -----------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"name,email\nada,ada@example.com\n" * 20,
    b"hi",
    b"SQLite format 2\x00" + b"\x00" * 100,
])
def test_refuses_non_sqlite_file_unchanged(tmp_path, content) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(litejobs.StorageError, match="not a SQLite database"):
        Store(path).connection()
    with pytest.raises(litejobs.StorageError, match="not a SQLite database"):
        Store(path).verify()
    with pytest.raises(litejobs.StorageError):
        litejobs.App(path).enqueue("t.x")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refuses_another_programs_database_unchanged(tmp_path) -> None:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.close()
    before = digest(path)
    with pytest.raises(litejobs.StorageError, match="another program"):
        Store(path).connection()
    with pytest.raises(litejobs.StorageError, match="another program"):
        Store(path).verify()
    with pytest.raises(litejobs.StorageError, match="another program"):
        litejobs.App(path).enqueue("t.x")
    assert digest(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_schema").fetchall() == [("customers",)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_refuses_foreign_application_id(tmp_path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(litejobs.StorageError, match="another program"):
        Store(path).connection()
    assert digest(path) == before


def test_empty_sqlite_file_is_adopted(tmp_path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # zero bytes
    app = litejobs.App(path)
    job = app.enqueue("t.x")
    assert app.get_job(job.id).state is State.QUEUED


def test_refuses_newer_schema(tmp_path) -> None:
    path = tmp_path / "jobs.db"
    store = Store(path)
    store.connection()
    store.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    for attempt in (lambda: Store(path).connection(), lambda: Store(path).verify(),
                    lambda: litejobs.App(path).enqueue("t.x")):
        with pytest.raises(litejobs.StorageError, match="newer litejobs") as info:
            attempt()
        assert str(SCHEMA_VERSION + 1) in str(info.value)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    conn.close()


def test_files_are_private(tmp_path) -> None:
    path = tmp_path / "jobs.db"
    old = os.umask(0)
    try:
        app = litejobs.App(path)
        app.enqueue("t.x")
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        for f in files:
            assert f.exists(), f
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, (f, oct(f.stat().st_mode))
    finally:
        os.umask(old)


def test_verify_accepts_a_sound_file_without_writing(app, db) -> None:
    enqueue(app, 10)
    app.store.close()
    before = digest(db)
    Store(db).verify()
    assert digest(db) == before
    Store(db.parent / "missing.db").verify()  # nothing there yet: fine
    assert not (db.parent / "missing.db").exists()


def make_corrupt(path: Path) -> None:
    """A litejobs file whose middle pages are overwritten with garbage."""
    app = litejobs.App(path)
    app.enqueue_many([litejobs.Prepared("t.work", ("x" * 2000, i), {}) for i in range(300)])
    app.store.close()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    page = 4096
    size = path.stat().st_size
    assert size >= 100 * page
    garbage = bytes((i * 7 + 13) % 256 for i in range(page))
    with open(path, "r+b") as f:
        for n in range(size // page // 3, size // page // 3 + 20):
            f.seek(n * page)
            f.write(garbage)


def test_verify_refuses_a_corrupt_file_without_writing(tmp_path) -> None:
    path = tmp_path / "jobs.db"
    make_corrupt(path)
    before = digest(path)
    with pytest.raises(litejobs.StorageError) as info:
        Store(path).verify()
    assert str(path) in str(info.value)
    assert "corrupt" in str(info.value) or "quick_check" in str(info.value)
    assert digest(path) == before


def test_reading_a_corrupt_file_raises_storage_error(tmp_path) -> None:
    path = tmp_path / "jobs.db"
    make_corrupt(path)
    with pytest.raises(litejobs.StorageError, match="corrupt"):
        litejobs.App(path).stats()


@pytest.mark.parametrize(("durability", "expected"), [("fast", 1), ("full", 2)])
def test_durability_sets_synchronous(tmp_path, durability, expected) -> None:
    store = Store(tmp_path / "jobs.db", durability=durability)
    conn = store.connection()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == expected
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    app = litejobs.App(tmp_path / "app.db", durability=durability)
    assert app.store.connection().execute("PRAGMA synchronous").fetchone()[0] == expected


def test_durability_default_is_full_and_bad_values_refused(tmp_path) -> None:
    assert Store(tmp_path / "a.db").durability == "full"
    with pytest.raises(ValueError, match="durability"):
        Store(tmp_path / "a.db", durability="NORMAL")
    with pytest.raises(ValueError, match="file path"):
        Store(":memory:")


def test_schema_version_and_application_id_are_stamped(app, db) -> None:
    enqueue(app)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x4C4A4F42
    finally:
        conn.close()


def test_a_current_file_opens_while_another_process_holds_the_write_lock(app, db) -> None:
    # A web worker starting while another process holds a long write (a big enqueue_many, a
    # prune) used to wait for the lock at open: opening ran the schema check as a write.
    app.store.connection()
    with WriteLockHolder(db) as holder:
        opener = subprocess.run(
            [sys.executable, "-c", textwrap.dedent("""
                import sys, litejobs
                app = litejobs.App(sys.argv[1])
                app.store.connection()
                print("opened", app.store.stats()["states"]["queued"])
            """), str(db)], env=clean_env(db), capture_output=True, text=True, timeout=30)
        assert opener.returncode == 0, opener.stderr
        assert opener.stdout.split() == ["opened", "0"]
        assert holder.holding()  # the lock was held throughout


# --- supervisors in other PID namespaces (issue 11, defect 3) ---------------------------------


def _free_pid(start: int = 300) -> int:
    """A pid no process on this host's PID namespace has (checked again by the caller)."""
    return next(p for p in range(start, 1 << 22) if not os.path.exists(f"/proc/{p}"))


def test_a_supervisor_in_another_pid_namespace_is_not_rescued_while_it_lives(app, db,
                                                                             tmp_path) -> None:
    """Two containers on one host network share a host name and the database file, not
    their pids: a live supervisor whose pid means nothing here must not be judged dead by
    `pid not alive here`. Once it is really gone, its silence still gets its jobs back."""
    from tests.conftest import APP_SPEC, REPO, wait_for

    job = app.enqueue("basic.slow", args=[300])
    # Inside a new PID namespace the supervisor gets pid `inner`, a pid nobody has out here
    # (pids are handed out in order from 1 in a new namespace: burn them up to it).
    inner = _free_pid()
    run = f"{sys.executable} -m litejobs run --app {APP_SPEC} --workers 1"
    script = (f"while :; do /bin/true & wait $!; [ $! -ge {inner - 1} ] && break; done; "
              f"{run} & wait $!")
    log = tmp_path / "inner.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", script],
            cwd=REPO, env=clean_env(db), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def running():
            row = app.store.get_job(job.id)
            return row is not None and row["state"] == "running" and row
        started = wait_for(running, 60, "the job to run in the other namespace",
                           details=lambda: log.read_text(errors="replace"))
        (sup,) = app.store.supervisors()
        assert sup["pid"] == inner, (sup, log.read_text(errors="replace"))
        assert not os.path.exists(f"/proc/{inner}")  # no such process out here
        assert sup["hostname"] == os.uname().nodename

        def rescue(now: float) -> int:
            return app.store.write(lambda tx: maintenance.rescue_dead_supervisors(
                tx, now, "host:1", {}, 3, app.store.supervisors()))

        assert rescue(time.time()) == 0  # the old code rescued it here: pid not alive
        row = app.store.get_job(job.id)
        assert (row["state"], row["attempt"]) == ("running", started["attempt"])
        assert [s["id"] for s in app.store.supervisors()] == [sup["id"]]
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)
    # Gone now: not judged by its pid, but by its heartbeat once that is old enough.
    beat = app.store.supervisors()[0]["heartbeat_at"]
    assert rescue(beat + 10) == 0
    assert rescue(beat + 31) == 1
    row = app.store.get_job(job.id)
    assert row["state"] != "running" and "WorkerDied" in row["error"]
    assert app.store.supervisors() == []


def test_a_rescue_logs_the_job_and_counts_a_crash(app, caplog) -> None:
    # The rescue is an outcome like the others: one line with the job's fields for
    # --log-format json, and a crash in litejobs_job_outcomes_total.
    (job_id,) = enqueue(app)
    t0 = time.time()
    claim_one(app.store, t0)
    with caplog.at_level("WARNING", logger="litejobs.jobs"):
        assert app.store.write(
            lambda tx: maintenance.rescue_expired(tx, t0 + LEASE + 1, {}, 3)) == 1
    (record,) = [r for r in caplog.records if r.name == "litejobs.jobs"]
    assert record.getMessage().startswith(f"job {job_id} (t.work, attempt 1) rescued: ")
    assert (record.job, record.task, record.attempt, record.outcome) == (  # type: ignore[attr-defined]
        job_id, "t.work", 1, "rescued")
    assert ("outcome", "t.work", "crashed", 1.0) in app.store.metric_totals()
