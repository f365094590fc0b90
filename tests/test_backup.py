"""``litejobs backup DEST``: a consistent, verified copy while a real supervisor drains and a
producer process enqueues; the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner

from litejobs.cli import main
from litejobs.store import SCHEMA_VERSION, Store
from tests.conftest import REPO, clean_env, one_line_error, wait_for

PRODUCER = """
import os, sys, litejobs
app = litejobs.App(sys.argv[1])
n = 0
while not os.path.exists(sys.argv[2]):
    app.enqueue("basic.add", args=[n, 0])
    n += 1
print(n)
"""


class Producer:
    """A process enqueueing one job after another until stopped."""

    def __init__(self, db: Path, tmp_path: Path) -> None:
        self.stop_file = tmp_path / "stop"
        self.proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(db),
                                      str(self.stop_file)], cwd=REPO, env=clean_env(db),
                                     stdout=subprocess.PIPE, text=True)

    def stop(self) -> int:
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0
        return int(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def top_id(db: Path) -> int:
    rows = Store(db).list_jobs(limit=1)
    return int(rows[0]["id"]) if rows else 0


def check_copy(dest: Path) -> apsw.Connection:
    """The copy is one ordinary SQLite file that passes integrity_check."""
    assert dest.is_file()
    for suffix in ("-wal", "-shm", "-journal"):
        assert not Path(f"{dest}{suffix}").exists(), suffix
    assert [p.name for p in dest.parent.iterdir() if ".tmp-" in p.name] == []
    conn = apsw.Connection(str(dest), flags=apsw.SQLITE_OPEN_READONLY)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    return conn


def test_backup_while_a_supervisor_drains_and_a_producer_enqueues(
        app, db_path, tmp_path, start_supervisor) -> None:
    app.enqueue_many([app.tasks["basic.add"].prepare(i, 0) for i in range(20_000)])
    sup = start_supervisor(workers=2)
    producer = Producer(db_path, tmp_path)
    try:
        wait_for(lambda: top_id(db_path) > 20_200, 30, "the producer to enqueue")
        wait_for(lambda: app.store.job_counts().get(("default", "succeeded"), 0) > 100, 30,
                 "the supervisor to run jobs", details=sup.output)
        before = top_id(db_path)  # committed before the backup began
        dest = tmp_path / "copies" / "jobs-copy.db"
        dest.parent.mkdir()
        out = subprocess.run([sys.executable, "-m", "litejobs", "backup", str(dest),
                              "--database", str(db_path)], capture_output=True, text=True,
                             cwd=REPO, env=clean_env(db_path), timeout=120)
        assert out.returncode == 0, out.stderr
        after = top_id(db_path)
        enqueued = producer.stop()
    finally:
        producer.kill()
    assert after > before and enqueued > 200  # writers went on during the backup
    assert out.stdout.startswith(f"wrote {dest}: ") and "integrity ok" in out.stdout
    conn = check_copy(dest)
    copied = conn.execute("SELECT count(*), max(id) FROM jobs WHERE id <= ?",
                          (before,)).fetchone()
    assert copied == (before, before)  # every job committed before it began
    total = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    assert f": {total} jobs," in out.stdout
    conn.close()
    listed = subprocess.run([sys.executable, "-m", "litejobs", "jobs", "--database", str(dest),
                             "--json", "--limit", "3"], capture_output=True, text=True,
                            cwd=REPO, env=clean_env(dest), timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3
    assert sup.running()


def test_a_backup_of_many_steps_copies_one_snapshot(app, db_path, tmp_path) -> None:
    """Page by page (a few pages a step) while another process commits: the copy is the
    snapshot of its start (it does not start over at each commit, nor mix two states)."""
    app.enqueue_many([app.tasks["basic.add"].prepare(i, 0) for i in range(5000)])
    producer = Producer(db_path, tmp_path)
    try:
        wait_for(lambda: top_id(db_path) > 5100, 30, "the producer to enqueue")
        seen: list[tuple[int, int]] = []
        dest = tmp_path / "copy.db"
        facts = Store(db_path).backup_to(str(dest), lambda d, t: seen.append((d, t)), pages=8,
                                         pause=0.001)
        producer.stop()
    finally:
        producer.kill()
    assert len(seen) > 10 and seen[-1][0] == seen[-1][1] == facts["pages"]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    conn = apsw.Connection(str(dest))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    count, top = conn.execute("SELECT count(*), max(id) FROM jobs").fetchone()
    assert count == top == facts["jobs"] >= 5100


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("LITEJOBS_")]:
        monkeypatch.delenv(var)
    app.enqueue("basic.add", args=[1, 2])
    return CliRunner()


def test_refusals(cli: CliRunner, db_path: Path, tmp_path: Path) -> None:
    def backup(*args: str) -> object:
        return cli.invoke(main, ["backup", *args, "--database", str(db_path)])

    one_line_error(backup(str(db_path)), "is the database itself")
    one_line_error(backup(str(tmp_path / "nodir" / "x.db")), "does not exist", "create it")
    one_line_error(backup(str(tmp_path)), "is a directory")
    taken = tmp_path / "taken.db"
    taken.write_text("keep me")
    one_line_error(backup(str(taken)), "already exists", "--force")
    assert taken.read_text() == "keep me"
    Path(f"{taken}-wal").write_text("a log")
    one_line_error(backup(str(taken), "--force"), "taken.db-wal exists")
    os.unlink(f"{taken}-wal")
    result = backup(str(taken), "--force", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["jobs"] == 1
    check_copy(taken).close()
    one_line_error(cli.invoke(main, ["backup", str(tmp_path / "y.db"), "--database",
                                     str(tmp_path / "none.db")]), "no database at")
    assert not (tmp_path / "y.db").exists()
