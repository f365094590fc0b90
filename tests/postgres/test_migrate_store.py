"""``litejobs migrate-store SRC DST`` (issue 16 item 5): a real SQLite file holding jobs in
every state (one running in a rate-limited queue, its supervisor killed with SIGKILL), a
workflow mid-way waiting on a token, cron history, a paused queue, a stored schedule, tags,
progress and metadata, and a purged top id, moved to a fresh PostgreSQL schema; every table
read back and compared with the file, jobs through both stores; then the moved jobs run on
PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

import litejobs
from litejobs.errors import StorageError
from litejobs.storemove import MOVED, MoveRefused, Progress, migrate_store
from litejobs.testing import Clock, run_until_idle
from tests.conftest import REPO, JobLog, SupervisorProcess, launch_supervisor, wait_for
from tests.postgres.stores import claim, open_store

pytestmark = pytest.mark.timeout(120)


def work(n: int) -> int:
    litejobs.current_job().set_progress(0.5, f"{n} half way")
    litejobs.current_job().set_metadata(rows=n)
    return n * 10


def broken() -> None:
    raise RuntimeError("broken for good")


def sqlite_rows(db: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        return cols, list(conn.execute(f"SELECT * FROM {table}"))
    finally:
        conn.close()


def pg_rows(url: str, table: str, cols: list[str]) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        there = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s", (table,))}
        shared = [c for c in cols if c in there]
        rows = conn.execute(f"SELECT {', '.join(shared)} FROM {table}").fetchall()
    return [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows]


def _key(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(repr(v) for v in row)


def build_source(app: Any, start_supervisor: Callable[[Path, Path], SupervisorProcess],
                 db: Path) -> dict[str, Any]:
    """Jobs in every state, in a real file; returns what the test needs to know."""
    slow = app.tasks["basic.slow"]
    running = slow.options(queue="rated").enqueue(60)  # its start: a rate window's row
    cfg = db.with_name("litejobs.toml")
    cfg.write_text('app = "tests.apps.basic:app"\n[queues.rated]\nrate_limit = "100/m"\n')
    sup = start_supervisor(cfg, db)
    wait_for(lambda: running.refresh().state == "running", 30, "the slow job to run")
    # A live supervisor: refused before anything is written.
    with pytest.raises(MoveRefused, match=r"supervisor\(s\) still run on .*Stop them"):
        migrate_store(str(db), "postgresql://nobody@127.0.0.1:1/none")
    sup.kill_group()  # SIGKILL: its heartbeat row and the running job stay behind
    wait_for(lambda: not sup.running(), 10, "the supervisor to die")

    w = app.task(name="mv.work", retries=0)(work)
    b = app.task(name="mv.broken", retries=0)(broken)
    add = app.tasks["basic.add"]
    clock = Clock()
    app.schedule("tick", "* * * * *", "mv.work", args=(7,))
    run_until_idle(app, clock=clock)  # the entry owes nothing from before this call
    done = w.options(tags=["user:7", "import"]).enqueue(3)
    failed = b.enqueue()
    cancelled = add.enqueue(1, 1)
    cancelled.cancel()
    scheduled = add.options(tags=["later"], delay=3600).enqueue(2, 2)
    app.pause_queue("held")
    held = add.options(queue="held", priority=5).enqueue(3, 3)
    flow = app.workflow("mid-way")
    first = flow.add(w.prepare(1))
    token = app.create_token(timeout=3600)
    second = flow.add(w.prepare(2), after=[first, token])
    flow.add(w.prepare(3), after=[second])
    run = flow.enqueue()
    clock.advance(61)
    run_until_idle(app, clock=clock)
    cancelled_top = add.enqueue(8, 8)  # the newest id, purged: the sequence starts past it
    cancelled_top.cancel()
    app.store.purge([cancelled_top.id])
    states = {j.state.value for j in app.jobs(limit=1000)}
    assert {"succeeded", "failed", "cancelled", "scheduled", "queued", "waiting",
            "running"} <= states, states
    return {"running": running.id, "done": done.id, "failed": failed.id, "held": held.id,
            "scheduled": scheduled.id, "token": token.id, "run": run.id,
            "top": cancelled_top.id, "second": second.id}


@pytest.fixture
def supervisor_on(tmp_path: Path) -> Iterator[Callable[[Path, Path], SupervisorProcess]]:
    """Factory: `litejobs run --workers 1 --config CFG` on DB, killed with its group at the
    end."""
    started: list[SupervisorProcess] = []

    def start(cfg: Path, db: Path) -> SupervisorProcess:
        cmd = [sys.executable, "-m", "litejobs", "run", "--workers", "1", "--config", str(cfg)]
        sup = launch_supervisor(cmd, REPO, db, tmp_path / f"supervisor-{len(started)}.log")
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill_group()


def test_migrate_everything_and_run_it_on_postgres(
        app: Any, db_path: Path, supervisor_on: Callable[[Path, Path], SupervisorProcess],
        pg_url: str) -> None:
    known = build_source(app, supervisor_on, db_path)
    before = db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    wal_before = wal.read_bytes() if wal.exists() else None
    lines: list[Progress] = []

    report = migrate_store(str(db_path), pg_url, progress=lines.append)

    assert db_path.read_bytes() == before, "the SQLite file was written to"
    assert (wal.read_bytes() if wal.exists() else None) == wal_before
    assert report.requeued == [known["running"]]
    empty = {t for t, n in report.copied.items() if not n}
    assert empty <= {"flow_starts", "metric_minutes", "metric_totals"}, empty
    for table in MOVED:
        cols, rows = sqlite_rows(db_path, table)
        got = pg_rows(pg_url, table, cols)
        shared = cols  # (the windows' job_id too, since the PostgreSQL schema 2)
        want = [tuple(r[cols.index(c)] for c in shared) for r in rows]
        if table == "jobs":
            at = {c: i for i, c in enumerate(shared)}
            fixed = []
            for r in want:
                r = list(r)
                r[at["parked"]] = 0
                if r[at["id"]] == known["running"]:
                    assert r[at["state"]] == "running"
                    r[at["state"]] = "queued"
                    r[at["interrupts"]] += 1
                    r[at["leased_by"]] = r[at["lease_until"]] = None
                    r[at["run_at"]] = next(g[at["run_at"]] for g in got
                                           if g[at["id"]] == known["running"])
                fixed.append(tuple(r))
            want = fixed
        if table == "attempts":
            added = [g for g in got if g[0] == known["running"] and g[2] == "interrupted"]
            assert len(added) == 1, added
            got = [g for g in got if g not in added]
        assert sorted(got, key=_key) == sorted(want, key=_key), table
        assert report.copied[table] == len(got) + (1 if table == "attempts" else 0)

    # Read back through both stores.
    sq, pg = app.store, open_store(pg_url)
    try:
        for row in sq.list_jobs(limit=1000):
            moved = pg.get_job(row["id"])
            assert moved is not None
            if row["id"] != known["running"]:
                assert dict(moved) == dict(row), row["id"]
                assert pg.attempts(row["id"]) == sq.attempts(row["id"])
        requeued = pg.get_job(known["running"])
        assert requeued is not None and requeued["state"] == "queued"
        assert [a.outcome for a in pg.attempts(known["running"])] == ["interrupted"]
        assert [r["id"] for r in pg.list_jobs(tag="user:7")] == [known["done"]]
        assert dict(pg.queue_list())["held"] is True
        assert pg.cron_entries() == sq.cron_entries()
        assert [s["name"] for s in pg.schedules()] == ["tick"]
        done = pg.get_job(known["done"])
        assert done is not None and done["progress"] == 0.5 and done["metadata"]
        assert pg.supervisors() == []  # heartbeats of the old store stay behind

        # The sequence starts past the top id the file ever gave (a purged one included).
        new = pg.insert_job(open_new_job(), time.time())
        assert new["id"] > known["top"]
        import psycopg

        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT nextval(pg_get_serial_sequence('workflows', 'id'))"
                               ).fetchone()
        assert row is not None and row[0] > known["run"]

        # The workflow goes on where it stopped: the token's completion readies its step.
        waiting = [r for r in pg.list_jobs(workflow=known["run"]) if r["state"] == "waiting"]
        assert len(waiting) == 3  # the token and the two steps after it
        assert pg.complete_token(known["token"], "null", time.time()) is None
        second = pg.get_job(known["second"])
        assert second is not None and second["state"] == "queued"

        # The moved jobs run: the requeued one and the queued ones of served queues.
        pg.set_paused("held", False)
        claimed = {int(r["id"]) for r in claim(pg, ["w1", "w2", "w3", "w4"])}
        assert {known["running"], known["held"]} <= claimed
    finally:
        pg.close()
    # A second move into the now non-empty store is refused, and writes nothing.
    with pytest.raises(MoveRefused, match=r"not empty .*never overwrites"):
        migrate_store(str(db_path), pg_url)


def open_new_job() -> Any:
    from tests.postgres.stores import job

    return job("t.new")


def test_move_is_refused_whole_when_the_file_changes_during_it(
        tmp_path: Path, pg_url: str) -> None:
    """A producer enqueueing during the copy: the copy is rolled back, PostgreSQL holds
    nothing of it (its first progress report is where the producer writes)."""
    db = tmp_path / "jobs.db"
    app = litejobs.App(db)
    add = app.task(name="t.add")(lambda a, b: a + b)
    app.enqueue_many(add.prepare(i, i) for i in range(10_000))
    seen: list[Progress] = []

    def producer(p: Progress) -> None:
        if not seen:
            add.enqueue(1, 2)
        seen.append(p)

    with pytest.raises(MoveRefused, match="changed during the copy"):
        migrate_store(str(db), pg_url, progress=producer)
    assert seen, "no progress was reported"
    assert pg_rows(pg_url, "jobs", ["id"]) == []


def test_a_start_not_yet_known_moves_and_counts_from_the_move(tmp_path: Path,
                                                               pg_url: str) -> None:
    """A rated job a killed supervisor had sent ahead (its start not yet known in the file)
    is moved as queued; its window's row moves too (nothing dropped) and counts from the
    move, as a drain counts a stopped job's start, not +infinity for ever."""
    from litejobs.store import QueueLimits, Store
    from litejobs.store.claims import QUEUE_RATED

    db = tmp_path / "jobs.db"
    app = litejobs.App(db)
    app.task(name="t.x", queue="r")(lambda: None).enqueue()
    file_store = Store(str(db))
    (row,) = file_store.write(lambda tx: tx.claim(
        ["w1"], [QueueLimits("r", None, (5, 60.0))], time.time(), 30.0, 0))
    assert row["unknown_start"] == QUEUE_RATED
    file_store.close()
    before = time.time()
    report = migrate_store(str(db), pg_url)
    assert report.requeued == [row["id"]] and not report.dropped
    assert report.copied["rate_starts"] == 1
    moved = pg_rows(pg_url, "rate_starts", ["queue", "at", "job_id"])
    assert len(moved) == 1 and moved[0][0] == "r" and moved[0][2] is None
    assert before - 5 < moved[0][1] < time.time() + 5  # the move's time on the server


def test_a_writer_on_the_destination_stops_the_move(tmp_path: Path, pg_url: str) -> None:
    """A process already writing into the new store (an uncommitted enqueue holds its row
    lock): the move waits 5 s for its lock, then stops in one line; nothing is written."""
    import psycopg

    db = tmp_path / "jobs.db"
    app = litejobs.App(db)
    app.task(name="t.x")(lambda: None).enqueue()
    pg = open_store(pg_url)
    pg.insert_job(open_new_job(), time.time())  # the schema, and a job the other one deletes
    pg.close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("DELETE FROM jobs")  # uncommitted: the store looks empty, and is locked
        with pytest.raises(StorageError, match="another process is using the store"):
            migrate_store(str(db), pg_url)
        conn.rollback()
    assert len(pg_rows(pg_url, "jobs", ["id"])) == 1


def test_a_value_postgres_cannot_hold_stops_the_move_in_one_line(tmp_path: Path,
                                                                  pg_url: str) -> None:
    """SQLite's text may hold a NUL, PostgreSQL's may not: the move stops naming the table,
    and nothing of it is committed."""
    db = tmp_path / "jobs.db"
    app = litejobs.App(db)
    job = app.task(name="t.x")(lambda: None).enqueue()
    app.task(name="t.y")(lambda: None).enqueue()
    conn = apsw.Connection(str(db))
    conn.execute("UPDATE jobs SET progress_message = 'a' || char(0) || 'b' WHERE id = ?",
                 (job.id,))
    conn.close()
    with pytest.raises(StorageError, match=r"refused a row of table jobs .*nothing was "
                       "committed") as caught:
        migrate_store(str(db), pg_url)
    assert "\n" not in str(caught.value)
    assert pg_rows(pg_url, "jobs", ["id"]) == []


def test_refusals_are_one_line(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "jobs.db"
    with pytest.raises(StorageError, match="does not exist"):
        migrate_store(str(db), pg_url)
    db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError):
        migrate_store(str(db), pg_url)
    app = litejobs.App(tmp_path / "ok.db")
    app.task(name="t.x")(lambda: None).enqueue()
    with pytest.raises(MoveRefused, match=r"postgresql:// URL.*not the other way"):
        migrate_store(str(tmp_path / "ok.db"), str(tmp_path / "other.db"))
    with pytest.raises(MoveRefused, match="from PostgreSQL to SQLite is not supported"):
        migrate_store(pg_url, str(tmp_path / "back.db"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    return subprocess.run([sys.executable, "-m", "litejobs", "migrate-store", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_cli_dry_run_move_and_config_line(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "jobs.db"
    app = litejobs.App(db)
    add = app.task(name="t.add")(lambda a, b: a + b)
    app.enqueue_many(add.prepare(i, i) for i in range(50))

    dry = _cli(str(db), pg_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "would be created" in dry.stdout
    assert not has_jobs_table(pg_url), "a dry run wrote the schema"
    moved = _cli(str(db), pg_url)
    assert moved.returncode == 0, moved.stderr
    assert "copied 50 jobs" in moved.stdout
    assert f'database = "{pg_url}"' in moved.stdout
    assert f"LITEJOBS_DATABASE='{pg_url}'" in moved.stdout
    assert "left as it was" in moved.stdout
    dry_again = _cli(str(db), pg_url, "--dry-run")
    assert dry_again.returncode == 0 and "NOT empty (50 jobs" in dry_again.stdout
    again = _cli(str(db), pg_url)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "not empty (50 jobs" in again.stderr

    secret = _cli(str(db), "postgresql://me:hunter2@127.0.0.1:1/none")
    assert secret.returncode == 1
    assert "hunter2" not in secret.stderr + secret.stdout and "me:***@" in secret.stderr
    assert secret.stderr.count("\n") == 1, secret.stderr


def test_progress_has_rate_and_eta() -> None:
    p = Progress(done=500, total=1500, seconds=2.0, table="jobs")
    assert p.rate == 250 and p.eta == 4.0


def has_jobs_table(url: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def test_a_supervisor_on_postgres_runs_the_moved_jobs(tmp_path: Path, pg_url: str) -> None:
    """The whole move as an operator makes it: a supervisor on the file is killed mid-job,
    the file is moved, `litejobs run` on the URL runs everything left: the killed job again
    (its attempt on the file recorded as interrupted), the queued jobs, a workflow's steps."""
    from tests.apps import wfapp

    db, log, go = tmp_path / "jobs.db", str(tmp_path / "tasks.log"), str(tmp_path / "go")
    app = wfapp.make_app(db)
    step, gate, fan_in = (app.tasks[f"wf.{n}"] for n in ("step", "gate", "fan_in"))
    gated = gate.enqueue(log, go, "gated")
    spec = "tests.apps.wfapp:app"
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", spec, "--workers", "1"]
    sup = launch_supervisor(cmd, REPO, db, tmp_path / "sqlite.log")
    try:
        # its own log line, not the claim: killed once the task really began
        wait_for(lambda: any(r["event"] == "start" for r in JobLog(Path(log)).records()), 30,
                 "the gated job to start")
    finally:
        sup.kill_group()
    wait_for(lambda: not sup.running(), 10, "the supervisor to die")
    plain = [step.enqueue(log, i) for i in range(3)]
    flow = app.workflow("after-the-move")
    first = flow.add(step.prepare(log, "a"))
    last = flow.add(fan_in.prepare(log), after=[first])
    flow.enqueue()

    report = migrate_store(str(db), pg_url)
    assert report.requeued == [gated.id]

    Path(go).touch()
    on_pg = wfapp.make_app(pg_url)
    sup = launch_supervisor([*cmd, "--database", pg_url], REPO,
                            pg_url, tmp_path / "pg.log")  # type: ignore[arg-type]
    try:
        assert last.id is not None
        moved = {i: on_pg.get_job(i) for i in [gated.id, *(j.id for j in plain), last.id]}
        for job_id, job in moved.items():
            assert job is not None, job_id
            job.result(timeout=30)
        last_job = on_pg.get_job(last.id)
        assert last_job is not None and last_job.result(timeout=1) == ["a"]
        outcomes = [a.outcome for a in on_pg.store.attempts(gated.id)]
        assert outcomes == ["interrupted", "succeeded"], outcomes
    finally:
        sup.kill_group()
    starts = [r for r in JobLog(Path(log)).records()
              if r["event"] == "start" and r["id"] == gated.id]
    assert len(starts) == 2, starts  # once on the file (killed), once on PostgreSQL
