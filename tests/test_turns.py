"""Writers kept waiting for the database go first once starving (litejobs/store/turns.py).

Real processes on a real file: one holds SQLite's write lock with a raw connection, producers
queue up behind it, and the order of their inserts (job ids) shows who got the lock first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import apsw

from litejobs.bell import bell_dir
from litejobs.store import turns
from tests.apps import basic
from tests.conftest import WriteLockHolder, clean_env, wait_for

PRODUCER = textwrap.dedent("""
    import sys
    from tests.apps import basic
    app = basic.make_app(sys.argv[1])
    app.store.connection()  # the schema is current: no write, so not held up by the lock
    print("ready", flush=True)
    print(app.enqueue("basic.add", args=[1, 2]).id, flush=True)
""")


def _turns_file(db: Path) -> Path:
    return Path(bell_dir(str(db))) / "turns"


def _marks(db: Path) -> tuple[int, int]:
    """(writers marked waiting, writers marked starving) in the turns file."""
    path = _turns_file(db)
    if not path.exists():
        return 0, 0
    data = path.read_bytes()
    slots = [turns._SLOT.unpack_from(data, i * turns._SLOT.size) for i in range(turns.SLOTS)]
    flags = data[turns._SLOTS_END:turns._SIZE]
    return sum(1 for since, _ in slots if since), sum(1 for f in flags if f)


def _spawn(script: str, db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", script, str(db)], env=clean_env(db),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    assert first == "ready", (first, proc.communicate())
    return proc


def _job_id(proc: subprocess.Popen[str]) -> int:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return int(out.split()[-1])


def test_an_uncontended_file_gets_no_turns_file(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    app = basic.make_app(db)
    for _ in range(3):
        app.enqueue("basic.add", args=[1, 2])
    assert not Path(bell_dir(str(db))).exists()


def test_a_starving_writer_goes_before_writers_that_came_after_it(tmp_path: Path) -> None:
    # Before turns, the first waiter slept up to 2 ms between tries and the three that came
    # later, trying every 0.1 ms at first, usually took the lock before it when it came free.
    db = tmp_path / "jobs.db"
    basic.make_app(db).store.connection()  # the schema exists before the lock is held
    with WriteLockHolder(db) as holder:
        first = _spawn(PRODUCER, db)
        wait_for(lambda: _marks(db)[1] == 1, 30, "the first producer to be starving")
        later = [_spawn(PRODUCER, db) for _ in range(3)]
        wait_for(lambda: _marks(db)[0] == 4, 30, "all four producers to be waiting")
        holder.release()
        first_id = _job_id(first)
        later_ids = [_job_id(p) for p in later]
    assert first_id < min(later_ids), (first_id, later_ids)
    assert _marks(db) == (0, 0)


def test_a_waiter_killed_in_line_is_passed_over_and_its_slot_cleared(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    basic.make_app(db).store.connection()
    with WriteLockHolder(db) as holder:
        doomed = _spawn(PRODUCER, db)
        wait_for(lambda: _marks(db) == (1, 1), 30, "the first producer to be starving")
        other = _spawn(PRODUCER, db)
        wait_for(lambda: _marks(db) == (2, 2), 30, "the second producer to be starving too")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        # The lock is still held, so the second producer still waits: the mark that goes is
        # the dead one's, once stale, cleared by the one it was ahead of.
        wait_for(lambda: _marks(db) == (1, 1), 30, "the killed producer's mark to be cleared")
        holder.release()
        assert _job_id(other) == 1
    assert _marks(db) == (0, 0)
    conn = apsw.Connection(str(db))
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
