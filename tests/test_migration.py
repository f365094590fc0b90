"""Schema migrations against real files: a version-1 file (built here with the version-1
DDL, as litejobs 1 wrote it) is upgraded on open with every job, attempt and cron record
intact, and job ids are never handed out twice (issue 11, defect 10)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import apsw
import pytest

import litejobs
from litejobs.job import TRANSITIONS, State
from litejobs.newjob import NewJob, NewJobs
from litejobs.store import SCHEMA_VERSION, QueueLimits, Store
from litejobs.store.migrations import MIGRATIONS
from litejobs.store.schema import _LEGAL_MOVES, _STATES, APPLICATION_ID
from litejobs.testing import run_until_idle

# The schema of version 1, word for word (its trigger and states are today's: they did not
# change in version 2).
V1_SCHEMA = f"""
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    task          TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ({_STATES})),
    priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    args          TEXT    NOT NULL,
    kwargs        TEXT    NOT NULL,
    key           TEXT,
    run_at        REAL    NOT NULL,
    scheduled_at  REAL    NOT NULL,
    created_at    REAL    NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL CHECK (max_attempts >= 1),
    interrupts    INTEGER NOT NULL DEFAULT 0,
    crashes       INTEGER NOT NULL DEFAULT 0,
    timeout       REAL,
    expires_at    REAL,
    concurrency_key   TEXT,
    concurrency_limit INTEGER,
    leased_by     TEXT,
    lease_until   REAL,
    started_at    REAL,
    finished_at   REAL,
    result        TEXT,
    error         TEXT,
    CHECK (state != 'running' OR (leased_by IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK (attempt - interrupts <= max_attempts OR state != 'running')
);
CREATE INDEX jobs_queued    ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_running   ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_finished  ON jobs (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
-- No index on task: it would cost every enqueue ~12% for the CLI's --task filters, which
-- scan newest first and stop at their limit.
CREATE INDEX jobs_key       ON jobs (task, key, created_at) WHERE key IS NOT NULL;
CREATE INDEX jobs_ckey      ON jobs (concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_expiry    ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('scheduled', 'queued');

-- Start times of rate-limited queues' jobs: the sliding window each claim counts.
CREATE TABLE rate_starts (
    queue TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE INDEX rate_starts_window ON rate_starts (queue, at);

-- The schema repeats TRANSITIONS: no update may move a job along an edge it does not list.
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
WHEN old.state != new.state AND NOT ({_LEGAL_MOVES})
BEGIN
    SELECT RAISE(ABORT, 'litejobs: illegal state transition');
END;

CREATE TABLE attempts (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('succeeded', 'failed', 'interrupted', 'stale')),
    worker      TEXT,
    started_at  REAL,
    finished_at REAL,
    error       TEXT,
    traceback   TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;

CREATE TABLE queues (
    name   TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- One row per cron entry: its schedule as last seen and the newest instant it handled.
CREATE TABLE cron_entries (
    name         TEXT PRIMARY KEY,
    schedule     TEXT NOT NULL,
    since        REAL NOT NULL,
    last_instant REAL,
    last_job     INTEGER
) WITHOUT ROWID;

-- The exactly-once guarantee: an (entry, instant) row is written in the same transaction as
-- the job it fires, so no instant can make two jobs, across restarts and supervisors.
CREATE TABLE cron_fires (
    entry    TEXT NOT NULL,
    instant  REAL NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('fired', 'skipped_overlap', 'skipped_misfire')),
    job_id   INTEGER,
    fired_at REAL NOT NULL,
    PRIMARY KEY (entry, instant)
) WITHOUT ROWID;

CREATE TABLE supervisors (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    queues       TEXT NOT NULL
) WITHOUT ROWID;
"""


NOW = 1_000_000.0


def _structure(path: Path) -> dict[str, Any]:
    """What a file's schema means, leaving out how its DDL text is spelled: columns, indexes
    (with their columns and conditions), foreign keys, triggers."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        out: dict[str, Any] = {}
        tables = [str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")]
        for t in tables:
            out[t] = {
                "columns": list(conn.execute(f"PRAGMA table_xinfo('{t}')")),
                "fks": [r[2:] for r in conn.execute(f"PRAGMA foreign_key_list('{t}')")],
                "indexes": sorted(
                    (str(r[1]), list(conn.execute(f"PRAGMA index_xinfo('{r[1]}')")))
                    for r in conn.execute(f"PRAGMA index_list('{t}')")),
            }
        out["partial"] = sorted(
            (str(n), " ".join(str(s)[str(s).upper().index(" WHERE "):].split()))
            for n, s in conn.execute(
                "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql LIKE '%WHERE%'"))
        out["triggers"] = sorted(" ".join(str(s).split()) for (s,) in conn.execute(
            "SELECT sql FROM sqlite_schema WHERE type = 'trigger'"))
        out["autoincrement"] = [str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE sql LIKE '%AUTOINCREMENT%'")]
        return out
    finally:
        conn.close()


def make_v1(path: Path, jobs: int = 5, schema: str = V1_SCHEMA) -> None:
    """A version-1 file with ``jobs`` finished jobs (each with a failed attempt), a queued
    one, a running one, a cron entry whose last fire was a pruned job, and a supervisor."""
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(schema)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    insert = ("INSERT INTO jobs (id, task, queue, state, args, kwargs, run_at, scheduled_at, "
              "created_at, attempt, max_attempts, finished_at, result, leased_by, lease_until,"
              " concurrency_key, concurrency_limit) "
              "VALUES (?, 't.work', 'default', ?, ?, '{}', ?, ?, ?, ?, 3, ?, ?, ?, ?, ?, ?)")
    with conn:
        for i in range(1, jobs + 1):
            conn.execute(insert, (i, "succeeded", f"[{i}]", NOW, NOW, NOW, 2, NOW + 1, "42",
                                  None, None, None, None))
            conn.execute("INSERT INTO attempts VALUES (?, 1, 'failed', 'w', ?, ?, 'boom', 'tb')",
                         (i, NOW, NOW))
        conn.execute(insert, (jobs + 1, "queued", "[0]", NOW, NOW, NOW, 0, None, None, None,
                              None, "k", 1))
        conn.execute(insert, (jobs + 2, "running", "[0]", NOW, NOW, NOW, 1, None, None,
                              "old:1:w", NOW + 30, "k", 1))
        conn.execute("INSERT INTO queues (name, paused) VALUES ('default', 0), ('p', 1)")
        conn.execute("INSERT INTO cron_entries VALUES ('nightly', '0 3 * * *', ?, ?, ?)",
                     (NOW, NOW, jobs + 50))
        conn.execute("INSERT INTO cron_fires VALUES ('nightly', ?, 'fired', ?, ?)",
                     (NOW, jobs + 50, NOW))
        conn.execute("INSERT INTO supervisors VALUES ('old', 'h', 1, ?, ?, '')", (NOW, NOW))
    conn.close()


def _dump(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


JOB_COLUMNS = ("id, task, queue, state, priority, args, kwargs, key, run_at, scheduled_at, "
               "created_at, attempt, max_attempts, interrupts, crashes, timeout, expires_at, "
               "concurrency_key, concurrency_limit, leased_by, lease_until, started_at, "
               "finished_at, result, error")


def test_a_version_1_file_is_migrated_on_open_with_everything_intact(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v1(old)
    jobs = _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id")
    attempts = _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt")
    cron = _dump(old, "SELECT * FROM cron_fires") + _dump(old, "SELECT * FROM cron_entries")
    app = litejobs.App(old)
    assert app.get_job(1) is not None  # opening migrates
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 8
    assert _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id") == jobs
    # every attempt kept
    assert _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt") == attempts
    assert len(attempts) == 5
    assert _dump(old, "SELECT * FROM cron_fires") + _dump(
        old, "SELECT * FROM cron_entries") == cron
    assert _dump(old, "SELECT id, pid_ns FROM supervisors") == [("old", None)]
    assert _dump(old, "PRAGMA foreign_key_check") == []
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]
    # the same schema as a file made new by this version
    fresh = tmp_path / "fresh.db"
    Store(fresh).connection()
    assert _structure(old) == _structure(fresh)
    # claims work on the upgraded file: job 6's key is full (job 7 runs), then free
    def claim() -> list[Any]:
        return app.store.write(lambda tx: tx.claim(["s:1:w"], [QueueLimits("default")], NOW,
                                                   30.0))
    assert claim() == []
    assert app.store.write(lambda tx: tx.succeed(7, 1, "null", "old:1:w", NOW, NOW))
    assert [r["id"] for r in claim()] == [6]
    # deleting a job still deletes its attempts
    assert app.store.purge([1]) == 1
    assert _dump(old, "SELECT count(*) FROM attempts WHERE job_id = 1") == [(0,)]
    # ids continue above every id the file ever stored, the pruned cron job's included
    new = app.enqueue("t.work", args=[1])
    assert new.id == 5 + 50 + 1


def make_v2(path: Path, schema: str = V1_SCHEMA) -> None:
    """A version-2 file: make_v1's, upgraded by the version 1 -> 2 migration alone."""
    make_v1(path, schema=schema)
    conn = apsw.Connection(str(path))
    with conn:
        migrate = MIGRATIONS[1]
        assert isinstance(migrate, str)
        conn.execute(migrate)
        conn.execute("PRAGMA user_version = 2")
    conn.close()


def test_a_version_2_file_is_migrated_to_3_keeping_jobs_and_taking_tags(
        tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v2(old)
    jobs = _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id")
    attempts = _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt")
    app = litejobs.App(old)
    job = app.get_job(1)
    assert job is not None and job.tags == [] and job.progress is None and job.metadata == {}
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id") == jobs
    assert _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt") == attempts
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]
    fresh = tmp_path / "fresh.db"
    Store(fresh).connection()
    assert _structure(old) == _structure(fresh)
    # the new columns and table work on the upgraded file; tag rows go with their job
    tagged = app.enqueue("t.work", args=[1]).id
    app.store.write(lambda tx: tx.insert(NewJob("t.work", "default", 0, "[2]", "{}", NOW, 1,
                                                None, tags='["a", "b"]'), NOW))
    (row,) = app.store.list_jobs(tag="b")
    assert row["tags"] == '["a", "b"]' and row["id"] == tagged + 1
    assert app.store.cancel(tagged + 1, reason="x", now=NOW)
    assert app.store.purge([tagged + 1]) == 1
    assert _dump(old, "SELECT count(*) FROM job_tags") == [(0,)]
    assert _dump(old, "PRAGMA foreign_key_check") == []


# Version 3's jobs table and transition trigger, as litejobs 3 wrote them: no state 'waiting'
# (V1_SCHEMA spells today's states and moves; version 4 added 'waiting' to both).
_V3_STATES = ", ".join(f"'{s.value}'" for s in State if s is not State.WAITING)
_V3_MOVES = "\n     OR ".join(
    f"(old.state = '{a.value}' AND new.state IN "
    f"({', '.join(repr(b.value) for b in sorted(targets - {State.WAITING}))}))"
    for a, targets in TRANSITIONS.items() if a is not State.WAITING and targets - {State.WAITING}
)
V3_BASE_SCHEMA = V1_SCHEMA.replace(f"CHECK (state IN ({_STATES}))",
                                   f"CHECK (state IN ({_V3_STATES}))"
                                   ).replace(_LEGAL_MOVES, _V3_MOVES)


def make_v3(path: Path) -> None:
    """A version-3 file: make_v1's (with version 3's states), upgraded by the version 1 -> 2
    and 2 -> 3 migrations alone."""
    make_v2(path, schema=V3_BASE_SCHEMA)
    conn = apsw.Connection(str(path))
    with conn:
        migrate = MIGRATIONS[2]
        assert isinstance(migrate, str)
        conn.execute(migrate)
        # the 1 -> 2 migration wrote today's moves into the trigger: version 3's instead
        conn.execute("DROP TRIGGER jobs_transition")
        conn.execute(f"""
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
WHEN old.state != new.state AND NOT ({_V3_MOVES})
BEGIN
    SELECT RAISE(ABORT, 'litejobs: illegal state transition');
END""")
        conn.execute("PRAGMA user_version = 3")
    conn.close()


def test_a_version_3_file_is_migrated_to_4_keeping_jobs_and_taking_a_waiting_step(
        tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v3(old)
    assert "waiting" not in V3_BASE_SCHEMA
    conn = apsw.Connection(str(old))
    # truly a version-3 file: neither its CHECK nor its transition trigger knows 'waiting'
    with pytest.raises(apsw.ConstraintError, match="CHECK"):
        conn.execute("INSERT INTO jobs (id, task, queue, state, args, kwargs, run_at, "
                     "scheduled_at, created_at, max_attempts) "
                     "VALUES (999, 't', 'q', 'waiting', '[]', '{}', 0, 0, 0, 1)")
    conn.execute("BEGIN")
    conn.execute("UPDATE jobs SET state = 'cancelled' WHERE id = 6")
    with pytest.raises(apsw.ConstraintError, match="illegal state transition"):
        conn.execute("UPDATE jobs SET state = 'waiting' WHERE id = 6")  # legal in version 4
    conn.execute("ROLLBACK")
    conn.close()
    jobs = _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id")
    attempts = _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt")
    cron = _dump(old, "SELECT * FROM cron_fires") + _dump(old, "SELECT * FROM cron_entries")
    tags = _dump(old, "SELECT id, tags FROM jobs ORDER BY id")
    app = litejobs.App(old)
    job = app.get_job(1)  # opening migrates
    assert job is not None and job.workflow is None and job.tags == []
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 8
    assert _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id") == jobs
    assert _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt") == attempts
    assert _dump(old, "SELECT * FROM cron_fires") + _dump(
        old, "SELECT * FROM cron_entries") == cron
    assert _dump(old, "SELECT id, tags FROM jobs ORDER BY id") == tags
    assert _dump(old, "SELECT count(*) FROM jobs WHERE workflow IS NOT NULL") == [(0,)]
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]
    assert _dump(old, "PRAGMA foreign_key_check") == []
    fresh = tmp_path / "fresh.db"
    Store(fresh).connection()
    assert _structure(old) == _structure(fresh)
    (jobs_sql,) = _dump(old, "SELECT sql FROM sqlite_schema WHERE name = 'jobs'")
    assert f"CHECK (state IN ({_STATES}))" in jobs_sql[0]
    # a workflow on the upgraded file: a step waits, the fan-in readies it, it runs
    add = app.task(name="m.add", queue="wf", retries=0)(lambda a, b: a + b)
    seen = app.task(name="m.seen", queue="wf", retries=0)(
        lambda: litejobs.current_job().results())
    run = litejobs.chain(add.prepare(1, 2), seen.prepare()).enqueue()
    _, second = run.jobs()
    assert second.state is State.WAITING
    assert run_until_idle(app, queues=["wf"]).succeeded == 2
    assert run.result(timeout=1) == [3]
    # a version-3 job fails and is retried as before (moves that kept their meaning)
    assert app.store.cancel(6, reason="x", now=NOW)
    assert app.store.retry(6, 0, NOW) is True
    assert app.get_job(6).state is State.QUEUED  # type: ignore[union-attr]
    # and the file opens again as the current version, unchanged
    assert litejobs.App(old).get_job(second.id) is not None
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]


def make_v4(path: Path) -> None:
    """A version-4 file: make_v3's, upgraded by the version 3 -> 4 migration alone."""
    make_v3(path)
    conn = apsw.Connection(str(path))
    with conn:
        migrate = MIGRATIONS[3]
        assert callable(migrate)
        migrate(conn.cursor())
        conn.execute("PRAGMA user_version = 4")
    conn.close()


def test_a_version_4_file_is_migrated_to_5_keeping_jobs_and_gaining_figures(
        tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v4(old)
    # truly a version-4 file: no trace column, no figures
    assert "trace" not in [r[1] for r in _dump(old, "PRAGMA table_info(jobs)")]
    assert _dump(old, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'metric_%'") == [(0,)]
    jobs = _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id")
    attempts = _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt")
    supervisors = _dump(old, "SELECT id, hostname, pid FROM supervisors")
    app = litejobs.App(old)
    assert app.get_job(1) is not None  # opening migrates
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 8
    assert _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id") == jobs
    assert _dump(old, "SELECT * FROM attempts ORDER BY job_id, attempt") == attempts
    assert _dump(old, "SELECT id, hostname, pid FROM supervisors") == supervisors
    assert _dump(old, "SELECT count(*) FROM jobs WHERE trace IS NOT NULL") == [(0,)]
    assert _dump(old, "SELECT count(*) FROM supervisors WHERE workers IS NOT NULL") == [(0,)]
    assert _dump(old, "SELECT count(*) FROM metric_minutes") == [(0,)]
    assert _dump(old, "SELECT count(*) FROM metric_totals") == [(0,)]
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]
    fresh = tmp_path / "fresh.db"
    Store(fresh).connection()
    assert _structure(old) == _structure(fresh)
    # jobs still run on the upgraded file
    app.task(name="m.add", queue="m5", retries=0)(lambda a, b: a + b)
    job = app.enqueue("m.add", args=[2, 3], queue="m5")
    assert run_until_idle(app, queues=["m5"]).succeeded == 1
    assert job.result(timeout=1) == 5


def make_v5(path: Path) -> None:
    """A version-5 file: make_v4's, upgraded by the version 4 -> 5 migration alone."""
    make_v4(path)
    conn = apsw.Connection(str(path))
    with conn:
        migrate = MIGRATIONS[4]
        assert isinstance(migrate, str)
        conn.execute(migrate)
        conn.execute("PRAGMA user_version = 5")
    conn.close()


def test_a_version_5_file_is_migrated_to_6_gaining_stored_schedules(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v5(old)
    assert _dump(old, "SELECT count(*) FROM sqlite_schema WHERE name = 'schedules'") == [(0,)]
    jobs = _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id")
    cron = _dump(old, "SELECT * FROM cron_fires") + _dump(old, "SELECT * FROM cron_entries")
    app = litejobs.App(old)
    assert app.get_job(1) is not None  # opening migrates
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 8
    assert _dump(old, f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id") == jobs
    assert _dump(old, "SELECT * FROM cron_fires") + _dump(
        old, "SELECT * FROM cron_entries") == cron
    assert _dump(old, "SELECT count(*) FROM schedules") == [(0,)]
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]
    fresh = tmp_path / "fresh.db"
    Store(fresh).connection()
    assert _structure(old) == _structure(fresh)


def make_v6(path: Path) -> None:
    """A version-6 file: make_v5's, upgraded by the version 5 -> 6 migration alone, with a
    queued job of a full concurrency key parked (as a version-6 claim parks it)."""
    make_v5(path)
    conn = apsw.Connection(str(path))
    with conn:
        migrate = MIGRATIONS[5]
        assert isinstance(migrate, str)
        conn.execute(migrate)
        conn.execute("UPDATE jobs SET parked = 1 WHERE state = 'queued' AND "
                     "concurrency_key IS NOT NULL")
        conn.execute("PRAGMA user_version = 6")
    conn.close()


def test_a_version_6_file_is_migrated_to_7_gaining_flow_rates(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v6(old)
    # truly a version-6 file: no flow columns or tables
    assert "flow_rate" not in [r[1] for r in _dump(old, "PRAGMA table_info(jobs)")]
    assert _dump(old, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'flow_%'") == [(0,)]
    jobs = _dump(old, f"SELECT {JOB_COLUMNS}, parked FROM jobs ORDER BY id")
    cron = _dump(old, "SELECT * FROM cron_fires") + _dump(old, "SELECT * FROM cron_entries")
    app = litejobs.App(old)
    assert app.get_job(1) is not None  # opening migrates
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 8
    assert _dump(old, f"SELECT {JOB_COLUMNS}, parked FROM jobs ORDER BY id") == jobs
    assert _dump(old, "SELECT * FROM cron_fires") + _dump(
        old, "SELECT * FROM cron_entries") == cron
    assert _dump(old, "SELECT count(*) FROM jobs WHERE flow_rate IS NOT NULL "
                      "OR flow_period IS NOT NULL") == [(0,)]
    assert _dump(old, "SELECT count(*) FROM flow_starts") == [(0,)]
    assert _dump(old, "SELECT count(*) FROM flow_waits") == [(0,)]
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]
    fresh = tmp_path / "fresh.db"
    Store(fresh).connection()
    assert _structure(old) == _structure(fresh)
    # a job with a flow key's rate runs on the upgraded file, and its start is counted
    app.task(name="m.add", queue="m7", retries=0)(lambda a, b: a + b)
    job = app.enqueue("m.add", args=[2, 3], queue="m7", flow_key="host", rate_limit="5/m")
    assert app.store.get_job(job.id)["flow_rate"] == 5  # type: ignore[index]
    assert run_until_idle(app, queues=["m7"]).succeeded == 1
    assert job.result(timeout=1) == 5
    assert _dump(old, "SELECT key, count(*) FROM flow_starts GROUP BY key") == [("host", 1)]


def make_v7(path: Path) -> None:
    """A version-7 file: make_v6's, upgraded by the version 6 -> 7 migration alone, with a
    start in a queue's rate window and one in a flow key's (as version 7 counted them)."""
    make_v6(path)
    conn = apsw.Connection(str(path))
    with conn:
        migrate = MIGRATIONS[6]
        assert isinstance(migrate, str)
        conn.execute(migrate)
        conn.execute("INSERT INTO rate_starts (queue, at) VALUES ('r', ?)", (NOW,))
        conn.execute("INSERT INTO flow_starts (key, until) VALUES ('host', ?)", (NOW + 60,))
        conn.execute("PRAGMA user_version = 7")
    conn.close()


def test_a_version_7_file_is_migrated_to_8_gaining_starts_not_yet_known(
        tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v7(old)
    assert "job_id" not in [r[1] for r in _dump(old, "PRAGMA table_info(rate_starts)")]
    jobs = _dump(old, f"SELECT {JOB_COLUMNS}, parked FROM jobs ORDER BY id")
    app = litejobs.App(old)
    assert app.get_job(1) is not None  # opening migrates
    assert _dump(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 8
    assert _dump(old, f"SELECT {JOB_COLUMNS}, parked FROM jobs ORDER BY id") == jobs
    # the starts already counted are starts of known time
    assert _dump(old, "SELECT queue, at, job_id FROM rate_starts") == [("r", NOW, None)]
    assert _dump(old, "SELECT key, until, job_id FROM flow_starts") == [("host", NOW + 60, None)]
    assert _dump(old, "PRAGMA integrity_check") == [("ok",)]
    fresh = tmp_path / "fresh.db"
    Store(fresh).connection()
    assert _structure(old) == _structure(fresh)
    # a rated job sent ahead on the upgraded file: its start waits, then gets its time
    store = app.store
    store.insert_jobs([_newjob()], NOW)
    limits = [QueueLimits("default", rate=(5, 1.0))]
    (row,) = store.write(lambda tx: tx.claim(["s:1:w"], limits, NOW + 1, 30.0, 0))
    assert row["unknown_start"] == 1
    assert _dump(old, "SELECT job_id FROM rate_starts WHERE queue = 'default'") == [(row["id"],)]
    store.write(lambda tx: tx.record_starts([(row["id"], NOW + 2, 1)]))
    assert _dump(old, "SELECT at, job_id FROM rate_starts WHERE queue = 'default'") == [
        (NOW + 2, None)]


def test_a_failed_migration_leaves_the_version_1_file_as_it_was(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    make_v1(old)
    before = _dump(old, "SELECT sql FROM sqlite_schema ORDER BY name")
    # another program's table in the way: the migration's transaction fails half-way
    conn = apsw.Connection(str(old))
    conn.execute("CREATE TABLE job_ids (x)")
    conn.close()
    with pytest.raises(Exception, match="job_ids"):
        Store(old).connection()
    conn = apsw.Connection(str(old))
    conn.execute("DROP TABLE job_ids")
    conn.close()
    assert _dump(old, "SELECT sql FROM sqlite_schema ORDER BY name") == before
    assert _dump(old, "PRAGMA user_version") == [(1,)]
    assert _dump(old, "SELECT count(*) FROM attempts") == [(5,)]


def test_job_ids_are_never_reused_after_purge_or_prune(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "jobs.db")
    ids = [app.enqueue("t.work", args=[i]).id for i in range(3)]
    app.store.write(lambda tx: tx.cursor.execute(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?", (time.time() - 100,)))
    assert app.store.purge(ids[1:]) == 2  # the newest two
    one = app.enqueue("t.work", args=[9]).id
    assert one > ids[-1]
    assert app.get_job(ids[-1]) is None  # the purged id names nobody
    # prune takes the newest too; a bulk insert (executemany) and a batch continue above
    app.store.write(lambda tx: tx.cursor.execute(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?", (time.time() - 100,)))
    assert app.store.write(lambda tx: tx.prune(time.time(), 100)) == 2
    # a bulk insert (executemany) and a batch (one statement) continue above as well
    rows = app.store.insert_jobs([_newjob(), _newjob()], time.time())
    assert [r["id"] for r in rows] == [one + 1, one + 2]
    batch = NewJobs(_newjob(), "[[1], [2]]", [[1], [2]])
    app.store.write(lambda tx: tx.cursor.execute("DELETE FROM jobs WHERE id >= ?", (one,)))
    rows = app.store.insert_jobs([batch], time.time())
    assert [r["id"] for r in rows] == [one + 3, one + 4]
    assert [app.store.get_job(r["id"])["args"] for r in rows] == ["[1]", "[2]"]


def _newjob() -> NewJob:
    return NewJob(task="t.work", queue="default", priority=0, args="[7]", kwargs="{}",
                  run_at=0.0, max_attempts=1, timeout=None)
