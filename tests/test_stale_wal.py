"""A -wal left beside a deleted, emptied or replaced database file (issue 11, item 17).

What SQLite does, found with real files and processes here (SQLite 3.54): a connection whose
file was deleted or moved does not checkpoint it when it closes, so that file's -wal and -shm
stay at the path. Beside a missing or empty file SQLite then deletes that WAL (or, while the old
file's process still runs, fails with "disk I/O error"); beside a replacement it replays the
WAL over it: the old file's jobs come back, or the file is corrupted. It does not notice that
the WAL is another file's: a WAL's salts and checksums tie its frames to its own header, never
to the database file. The store refuses, writing nothing, every case where the WAL provably
belongs to another file (no file, an empty one, one without a SQLite header, one not in WAL
mode); a WAL-mode file put in place of the old one cannot be told from the files alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import litejobs
from litejobs.errors import StorageError
from tests.conftest import APP_SPEC, clean_env, wait_for

pytestmark = pytest.mark.timeout(60)

#: Writes ``n`` jobs of task "t.old" and keeps its connection open until told to go on.
HOLDER = textwrap.dedent("""
    import os, sys, time
    import litejobs

    db, n, ready, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    app = litejobs.App(db)
    for i in range(n):
        app.enqueue("t.old", args=[i])
    open(ready, "w").close()
    deadline = time.monotonic() + 50
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never told to go on")
        time.sleep(0.005)
    app.enqueue("t.old", args=[n])  # one more write, after the file was swapped
    app.store.close()  # a deleted or moved file: SQLite neither checkpoints nor deletes the WAL
""")


class Holder:
    """A process that made the database at ``db`` and keeps it open."""

    def __init__(self, tmp: Path, db: Path, n: int) -> None:
        script = tmp / "holder.py"
        script.write_text(HOLDER)
        self.ready, self.go = tmp / "ready", tmp / "go"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(db), str(n), str(self.ready), str(self.go)],
            env=clean_env(db), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None, 40,
                 "the holder to write its jobs")
        assert self.ready.exists(), self.proc.communicate()

    def finish(self) -> None:
        """Let it write once more and close normally."""
        self.go.touch()
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for h in made:
        if h.proc.poll() is None:
            h.kill()


def hold(holders: list[Holder], tmp: Path, db: Path, n: int) -> Holder:
    holders.append(Holder(tmp, db, n))
    return holders[-1]


def wal(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def old_jobs(db: Path) -> int:
    """How many "t.old" jobs a new App at ``db`` sees (enqueueing one of its own first)."""
    app = litejobs.App(db)
    try:
        app.enqueue("t.new")
        return app.store.count_matching(["queued"], task="t.old")
    finally:
        app.store.close()


def assert_refused(db: Path, why: str) -> None:
    with pytest.raises(StorageError) as info:
        old_jobs(db)
    message = str(info.value)
    assert "\n" not in message
    assert f"{db}-wal (" in message and why in message
    assert "deleted or replaced while in use, or a restore left the old WAL behind" in message
    assert f"move {db}-wal and {db}-shm aside and try again" in message
    assert f"restore {db} from a backup first" in message


# --- the files provably another's: refused, nothing written ----------------------------------


def test_a_file_deleted_while_its_process_runs_is_refused(tmp_path, holders) -> None:
    db = tmp_path / "jobs.db"
    hold(holders, tmp_path, db, 50)
    db.unlink()
    before = wal(db).stat().st_size
    # Today SQLite fails here with "disk I/O error" and the open leaves an empty jobs.db.
    assert_refused(db, f"{db} does not exist")
    assert not db.exists()
    assert wal(db).stat().st_size == before


def test_a_deleted_file_whose_process_closed_is_refused(tmp_path, holders) -> None:
    db = tmp_path / "jobs.db"
    holder = hold(holders, tmp_path, db, 50)
    db.unlink()
    holder.finish()
    assert wal(db).stat().st_size > 0  # SQLite left the deleted file's WAL at the path
    before = digest(wal(db))
    # Today SQLite deletes that WAL and starts a new file: 0 old jobs, no word said.
    assert_refused(db, f"{db} does not exist")
    assert not db.exists()
    assert digest(wal(db)) == before


@pytest.mark.parametrize(("content", "why"), [(b"", "is empty"),
                                             (b"\0" * 4096, "has no SQLite header")])
def test_an_emptied_or_zeroed_file_is_refused(tmp_path, holders, content, why) -> None:
    db = tmp_path / "jobs.db"
    holder = hold(holders, tmp_path, db, 50)
    db.unlink()
    holder.kill()
    db.write_bytes(content)
    assert_refused(db, f"{db} {why}")
    assert db.read_bytes() == content


def restored_with_vacuum_into(tmp_path: Path, holders: list[Holder], jobs: int) -> Path:
    """jobs.db restored from a VACUUM INTO copy (``jobs`` jobs, not in WAL mode) while the -wal
    of another process's 2,000 jobs is left beside it."""
    db = tmp_path / "jobs.db"
    backup = tmp_path / "backup.db"
    early = litejobs.App(db)
    for i in range(jobs):
        early.enqueue("t.restored", args=[i])
    conn = apsw.Connection(str(db))
    conn.execute("VACUUM INTO ?", (str(backup),))
    conn.close()
    early.store.close()
    holder = hold(holders, tmp_path, db, 2000)
    os.replace(backup, db)
    holder.finish()
    return db


def test_a_restore_made_with_vacuum_into_is_refused(tmp_path, holders) -> None:
    """The restored file (3 jobs) is not in WAL mode; the old process's WAL (2,000 jobs) is."""
    db = restored_with_vacuum_into(tmp_path, holders, jobs=3)
    before = digest(db)
    # Today: the 2,000 old jobs show in the restored file, or SQLite calls it corrupt.
    assert_refused(db, "is not a WAL-mode file")
    assert digest(db) == before


def test_doctor_reports_a_stale_wal_and_opens_nothing(tmp_path, holders) -> None:
    db = tmp_path / "jobs.db"
    holder = hold(holders, tmp_path, db, 50)
    db.unlink()
    holder.finish()
    out = subprocess.run([sys.executable, "-m", "litejobs", "doctor", "--database", str(db),
                          "--json"], cwd=tmp_path, env=clean_env(db),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    checks = {c["check"]: c for c in json.loads(out.stdout)}
    assert checks["stale_wal"]["verdict"] == "fail"
    assert f"move {db}-wal and {db}-shm aside" in checks["stale_wal"]["message"]
    assert "database" not in checks  # not "does not exist yet; created on the first enqueue"
    assert not db.exists()


# --- what SQLite does with a WAL-mode replacement: not refused, shown here ---------------------


def test_sqlite_replays_a_stale_wal_over_a_wal_mode_replacement(tmp_path, holders) -> None:
    """Why the guard exists: SQLite does not check that a WAL belongs to its file."""
    db = tmp_path / "jobs.db"
    other = tmp_path / "other.db"
    conn = apsw.Connection(str(other))
    conn.execute("PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1)")
    conn.close()
    holder = hold(holders, tmp_path, db, 50)
    os.replace(other, db)
    holder.finish()
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema")}
    finally:
        conn.close()
    assert "jobs" in tables and "t" not in tables  # the old file's pages, not the new one's


# --- ordinary files: opened as before ---------------------------------------------------------


def test_the_wal_of_a_running_process_is_used(tmp_path, holders) -> None:
    db = tmp_path / "jobs.db"
    hold(holders, tmp_path, db, 50)
    assert wal(db).stat().st_size > 0
    assert old_jobs(db) == 50


def test_the_wal_a_killed_process_left_is_recovered(tmp_path, holders) -> None:
    db = tmp_path / "jobs.db"
    hold(holders, tmp_path, db, 50).kill()
    assert wal(db).stat().st_size > 0
    assert old_jobs(db) == 50


@pytest.mark.parametrize("size", [0, 100])
def test_a_wal_too_short_for_a_frame_is_no_obstacle(tmp_path, size) -> None:
    db = tmp_path / "jobs.db"
    wal(db).write_bytes(b"\0" * size)
    assert old_jobs(db) == 0  # a missing file beside it is created
    app = litejobs.App(db)
    app.enqueue("t.old")
    app.store.close()
    wal(db).write_bytes(b"")
    assert old_jobs(db) == 1  # an existing file beside an empty one opens


def test_run_refuses_a_stale_wal_before_checking_the_file(tmp_path, holders) -> None:
    """`litejobs run` checks the file (quick_check) before serving it: the check tells the
    stale WAL, not "corrupt, start a new file"."""
    db = restored_with_vacuum_into(tmp_path, holders, jobs=1)
    before = digest(db)
    out = subprocess.run([sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC,
                          "--database", str(db), "--workers", "1"], cwd=tmp_path,
                         env=clean_env(db), stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert f"move {db}-wal and {db}-shm aside" in out.stderr, out.stderr
    assert digest(db) == before
