"""Writers kept waiting for the database go first once starving (litejobs/store/turns.py).

Real processes on a real file: one holds SQLite's write lock with a raw connection, producers
queue up behind it, and the order of their inserts (job ids) shows who got the lock first.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
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


#: Enqueues argv[2] jobs in a loop once its connection is open; prints when its first enqueue
#: returned and how long the slowest of the others took (time.monotonic(): one clock for all
#: processes on the machine).
LOOP = textwrap.dedent("""
    import sys, time
    from tests.apps import basic
    app = basic.make_app(sys.argv[1])
    app.store.connection()
    print("ready", flush=True)
    first_done, worst = 0.0, 0.0
    for i in range(int(sys.argv[2])):
        t = time.monotonic()
        app.enqueue("basic.add", args=[i, 0])
        if i == 0:
            first_done = time.monotonic()
        else:
            worst = max(worst, time.monotonic() - t)
    print(first_done, worst, flush=True)
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


def _live_marks(db: Path, since: float) -> int:
    """Slots marked by a real waiter (times that make sense, written after ``since``)."""
    try:
        data = _turns_file(db).read_bytes().ljust(turns._SIZE, b"\0")
    except FileNotFoundError:
        return 0
    now = time.monotonic()
    slots = [turns._SLOT.unpack_from(data, i * turns._SLOT.size) for i in range(turns.SLOTS)]
    return sum(1 for begun, seen in slots if since <= begun <= seen <= now + 1)


def _spawn(script: str, db: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", script, str(db), *args], env=clean_env(db),
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


def _garbage() -> bytes:
    """A turns file no litejobs wrote: every writer marked starving, with times from the
    future (another boot's clock), NaN, or backwards."""
    far = time.monotonic() + 1e6
    marks = [(far, far), (math.nan, math.nan), (far, 1.0), (1.0, far)]
    data = b"".join(turns._SLOT.pack(*marks[i % len(marks)]) for i in range(turns.SLOTS))
    return data + b"\xff" * turns.SLOTS


def test_a_garbage_turns_file_does_not_hold_writers_back(tmp_path: Path) -> None:
    # Before: a mark last seen in the future counted as a live starving writer, so every
    # contended write held back until its busy deadline (5 s), and so did every later write.
    db = tmp_path / "jobs.db"
    basic.make_app(db).store.connection()
    path = _turns_file(db)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(_garbage())
    path.chmod(0o600)
    began = time.monotonic()
    with WriteLockHolder(db) as holder:
        procs = [_spawn(LOOP, db, "5") for _ in range(3)]
        wait_for(lambda: _live_marks(db, began) == 3, 30, "the three producers to be waiting")
        released = time.monotonic()
        holder.release()
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, _) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
        first_done, worst = map(float, out.split()[-2:])
        # a correctness bound, far under the 5 s busy deadline (not a performance target)
        assert first_done - released < 1.0, (first_done - released, out)
        assert worst < 1.0, (worst, out)
    conn = apsw.Connection(str(db))
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (15,)


def test_truncating_the_turns_file_while_writers_contend_kills_none(tmp_path: Path) -> None:
    # Before: the file was mapped, and a mapping of a file cut short kills the process that
    # touches it with SIGBUS: every producer (and supervisor) waiting at that moment.
    db = tmp_path / "jobs.db"
    basic.make_app(db).store.connection()
    path = _turns_file(db)
    began = time.monotonic()
    with WriteLockHolder(db) as holder:
        procs = [_spawn(LOOP, db, "200") for _ in range(4)]
        wait_for(lambda: _live_marks(db, began) == 4, 30, "the four producers to be waiting")
        os.truncate(path, 0)  # while all four are in line, refreshing their marks
        holder.release()
        deadline = time.monotonic() + 120
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            os.truncate(path, 0)  # and again and again while they contend
            time.sleep(0.002)
        outs = [p.communicate(timeout=60) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 0, 0, 0], (codes, outs)  # -7: SIGBUS
    conn = apsw.Connection(str(db))
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (800,)
