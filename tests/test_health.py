"""``litejobs health`` and ``litejobs.health.check``: exit codes with and without a running
supervisor, --max-age, leases left unrescued, and files that cannot be used."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import litejobs
from litejobs.health import check
from litejobs.store import QueueLimits
from tests.conftest import REPO, clean_env, wait_for


def health(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`litejobs health` as a probe runs it: a real process, judged by its exit status."""
    return subprocess.run([sys.executable, "-m", "litejobs", "health", "--database", str(db),
                           *args], capture_output=True, text=True, cwd=REPO,
                          env=clean_env(db), timeout=60)


def one_line(out: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert out.returncode == 1, (out.stdout, out.stderr)
    text = (out.stdout + out.stderr).strip()
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def test_healthy_with_a_running_supervisor_and_not_without(app, db_path,
                                                           start_supervisor) -> None:
    app.enqueue("basic.add", args=[1, 2])  # the file exists, no supervisor
    one_line(health(db_path), "no supervisor heartbeat in the last 10 s",
             "no supervisor has ever run", "litejobs run")
    sup = start_supervisor(workers=1)
    out = health(db_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok:") and "1 supervisor(s)" in out.stdout
    data = json.loads(health(db_path, "--json").stdout)
    assert data == {"ok": True, "problems": [], "supervisors": 1}
    # --max-age shorter than the time since the last heartbeat (every 5 s): unhealthy
    wait_for(lambda: health(db_path, "--max-age", "0.2").returncode == 1, 15,
             "a heartbeat older than 0.2 s")
    assert check(app, max_age=30).ok
    sup.send(signal.SIGKILL)
    sup.wait(10)
    # its row stays: healthy while its last heartbeat is younger than max-age, then not
    beat = app.store.supervisors()[0]["heartbeat_at"]
    assert check(app, max_age=60, now=beat + 30).ok
    late = check(app, max_age=10, now=beat + 30)
    assert not late.ok and late.supervisors == 0
    assert "the newest heartbeat is 30 s old" in late.problems[0]
    out = wait_for(lambda: (o := health(db_path, "--max-age", "0.5", "--json")).returncode
                   and o, 10, "the killed supervisor's heartbeat to age")
    assert out.returncode == 1 and json.loads(out.stdout)["ok"] is False


def test_a_lease_left_unrescued_is_unhealthy(app, tasks) -> None:
    """A supervisor row that heartbeats, and a running job whose lease ended over a lease ago:
    nothing rescues it, so the file is not being served."""
    now = time.time()
    job = tasks.add.enqueue(1, 1)
    app.store.write(lambda tx: tx.heartbeat("host:1:abc", "host", 1, now, now, ""))
    assert check(app, now=now).ok
    old = now - 100
    rows = app.store.write(lambda tx: tx.claim(["host:1:abc:w2"], [QueueLimits("default")],
                                               old, 30.0))
    assert [r["id"] for r in rows] == [job.id]
    result = check(app, now=now)  # lease ended 70 s ago, over a lease (30 s)
    assert not result.ok and result.supervisors == 1
    assert "1 running job(s) have leases that ended over 30 s ago" in result.problems[0]
    assert check(app, now=now, lease=80).ok  # ended less than a lease ago: a rescue is due


def test_files_that_cannot_be_used(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    one_line(health(missing), "no database at", "litejobs run")
    assert not missing.exists()  # a probe never creates the file
    one_line(health(tmp_path / "nodir" / "x.db"), "directory", "does not exist")
    other = tmp_path / "other.db"
    subprocess.run([sys.executable, "-c", "import apsw, sys; c = apsw.Connection(sys.argv[1]); "
                    "c.execute('CREATE TABLE t (x)')", str(other)], check=True)
    one_line(health(other), "not a litejobs database")
    text = tmp_path / "text.db"
    text.write_text("not a database at all, just some text that is long enough\n" * 3)
    one_line(health(text), "text.db")


def test_an_old_schema_is_named(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    litejobs.App(db).store.connection()
    subprocess.run([sys.executable, "-c", "import apsw, sys; c = apsw.Connection(sys.argv[1]); "
                    "c.execute('PRAGMA user_version = 4')", str(db)], check=True)
    one_line(health(db), "schema version 4", "litejobs run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_file_is_unhealthy(app, db_path) -> None:
    app.enqueue("basic.add", args=[1, 2])
    db_path.chmod(0o444)
    try:
        one_line(health(db_path), "not writable")
    finally:
        db_path.chmod(0o600)
