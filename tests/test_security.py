"""Hostile surroundings: the wake-up directory and the turns file in reach of other users.

A database path too long for a socket address puts the supervisors' sockets and the turns file
in a per-user fallback directory whose name anyone can compute; a database in a shared directory
(``/tmp/jobs.db``) has its ``jobs.db-bells`` beside it, which anyone can create first. Real
processes on real files: another user's directory is made as root and given to uid 65534
(``nobody``), a link planted where the turns file goes points at a victim database, and a
contended write (a raw connection holds SQLite's write lock meanwhile) must neither follow it
nor fail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from litejobs.bell import Bell, bell_dir
from tests.apps import basic
from tests.conftest import WriteLockHolder, clean_env, wait_for

pytestmark = pytest.mark.timeout(120)

NOBODY = 65534
PRODUCER = textwrap.dedent("""
    import sys
    from tests.apps import basic
    app = basic.make_app(sys.argv[1])
    app.store.connection()  # the schema is current: no write, so not held up by the lock
    print("ready", flush=True)
    print(app.enqueue("basic.add", args=[1, 2]).id, flush=True)
""")


def long_db(tmp_path: Path) -> Path:
    """A database path too long for its sockets to live beside it."""
    db = tmp_path / ("long-directory-name-" * 3) / "jobs.db"
    db.parent.mkdir()
    assert len(str(db) + "-bells") > 80
    return db


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A world-writable sticky directory, like /tmp, with a short name (socket addresses
    hold 108 bytes; pytest's tmp_path is already long)."""
    tmp = Path(tempfile.mkdtemp(prefix="lj-", dir="/tmp"))
    tmp.chmod(0o1777)
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def child_env(db: Path, tmp: Path, **extra: str) -> dict[str, str]:
    env = clean_env(db, TMPDIR=str(tmp), **extra)
    if "XDG_RUNTIME_DIR" not in extra:
        env.pop("XDG_RUNTIME_DIR", None)
    return env


def bells_of(db: Path, env: dict[str, str]) -> Path:
    """The bells directory a litejobs process with ``env`` uses for ``db`` (asked of a child
    process: the name depends on its environment, and on the litejobs under test)."""
    out = subprocess.run([sys.executable, "-c", "import sys; from litejobs.bell import bell_dir;"
                          " print(bell_dir(sys.argv[1]))", str(db)], env=env,
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def victim_db(tmp_path: Path) -> tuple[Path, str]:
    """A database of someone else's jobs (what the attack zeroed), and its digest."""
    victim = tmp_path / "victim.db"
    app = basic.make_app(victim)
    for i in range(3):
        app.enqueue("basic.add", args=[i, i])
    app.store.close()
    return victim, digest(victim)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plant(directory: Path, how: str, victim: Path) -> None:
    """What a local attacker leaves where ``directory`` will be: the missing directories, and
    in the last one ``turns`` as a link to ``victim``.

    ``other``: the directories are another user's (nobody) and writable by all, as someone
    expecting our sockets would make them. ``open``: ours, but writable by all. ``link``:
    ours and private, with the link planted earlier."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        d.mkdir()
        d.chmod(0o700 if how == "link" else 0o777)
        if how == "other":
            os.chown(d, NOBODY, NOBODY)
    link = directory / "turns"
    link.symlink_to(victim)
    if how == "other":
        os.lchown(link, NOBODY, NOBODY)


HOWS = ["other", "open", "link"]


def needs_root(how: str) -> None:
    if how == "other" and os.geteuid() != 0:
        pytest.skip("making a directory of another user needs root")


# --- a planted link is never written through ----------------------------------------------


@pytest.mark.parametrize("where", ["beside", "fallback"])
@pytest.mark.parametrize("how", HOWS)
def test_a_planted_turns_link_is_not_followed_and_the_write_succeeds(
        tmp_path: Path, shared_tmp: Path, how: str, where: str) -> None:
    needs_root(how)
    tmp = shared_tmp
    if where == "beside":
        db = tmp / "jobs.db"  # a database in a shared directory: its -bells beside it
    else:
        db = long_db(tmp_path)
    env = child_env(db, tmp)
    basic.make_app(db).store.connection()  # the schema exists before the lock is held
    victim, before = victim_db(tmp_path)
    bells = bells_of(db, env)
    plant(bells, how, victim)
    err_path = tmp_path / "producer.err"
    with WriteLockHolder(db) as holder, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(db)], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            # The producer meets the lock, and looks for its turns: it either refuses the
            # place (and says so) or (before the fix) writes through the link.
            wait_for(lambda: "not using" in err_path.read_text() or digest(victim) != before,
                     30, "the producer to refuse the planted turns file",
                     details=err_path.read_text)
            holder.release()
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert digest(victim) == before, f"the victim file was written through {bells}/turns"
    assert proc.returncode == 0, err_path.read_text()
    assert int(out.split()[-1]) >= 1  # the contended write went through
    assert os.listdir(bells) == ["turns"] and (bells / "turns").is_symlink()
    warning = err_path.read_text()
    assert "Traceback" not in warning, warning
    # it names what it refuses: the directory, its per-user parent, or the link
    assert any(f"not using {p} " in warning for p in (bells, bells.parent, bells / "turns")), \
        warning
    conn = apsw.Connection(str(victim))
    assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (3,)


# --- supervisors: a long path works, an unsafe directory is not used -------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:  # the supervisor fixture's database: a long path here
    return long_db(tmp_path)


@pytest.fixture
def private_env(shared_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR a fresh shared temporary directory and no XDG_RUNTIME_DIR, for this process
    and the supervisors it starts."""
    tmp = shared_tmp
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return tmp


def sockets(directory: Path) -> list[str]:
    try:
        return [n for n in os.listdir(directory) if n.endswith(".sock")]
    except FileNotFoundError:
        return []


def assert_private(directory: Path) -> None:
    st = os.lstat(directory)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid(), (directory, st)
    assert stat.S_IMODE(st.st_mode) == 0o700, (directory, oct(st.st_mode))


@pytest.mark.parametrize("runtime", ["tmp", "xdg"])
def test_a_long_database_path_works_end_to_end_through_the_bell(
        start_supervisor: Any, app: Any, db_path: Path, private_env: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runtime: str) -> None:
    if runtime == "xdg":
        xdg = private_env / "run"
        xdg.mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    bells = Path(bell_dir(str(db_path)))
    assert bells.parent == (xdg if runtime == "xdg" else private_env / f"litejobs-{os.geteuid()}")
    sup = start_supervisor(workers=1)
    assert sockets(bells), sup.output()
    assert_private(bells)
    if runtime == "tmp":
        assert_private(bells.parent)
    bell = Bell(str(db_path))
    bell.ring(b"q")
    assert [Path(t).parent for t in bell._targets] == [bells]
    assert app.enqueue("basic.add", args=[2, 3]).result(timeout=30) == 5
    assert "not using" not in sup.output()


def test_a_supervisor_does_not_bind_in_another_users_directory(
        start_supervisor: Any, app: Any, db_path: Path, private_env: Path,
        tmp_path: Path) -> None:
    needs_root("other")
    victim, before = victim_db(tmp_path)
    bells = bells_of(db_path, clean_env(db_path))
    plant(bells, "other", victim)
    # The attacker listens there, hoping for our rings.
    spy = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    spy.bind(str(bells / "spy.sock"))
    spy.setblocking(False)
    try:
        sup = start_supervisor(workers=1)
        # No bell: the supervisor's poll finds the job; it still runs.
        assert app.enqueue("basic.add", args=[2, 3]).result(timeout=30) == 5
        assert sorted(os.listdir(bells)) == ["spy.sock", "turns"], sup.output()
        assert f"not using {bells.parent} " in sup.output(), sup.output()
        with pytest.raises(BlockingIOError):
            spy.recv(64)  # not rung: sockets in a directory others control are not ours
    finally:
        spy.close()
    assert digest(victim) == before


# --- the fallback directory --------------------------------------------------------------------


def test_producers_on_a_long_path_fall_back_to_a_private_dir_they_verify(
        tmp_path: Path, shared_tmp: Path) -> None:
    tmp = shared_tmp
    db = long_db(tmp_path)
    env = child_env(db, tmp)
    bells = bells_of(db, env)
    assert str(bells).startswith(str(tmp / f"litejobs-{os.geteuid()}")), bells
    # Contend, so the turns file is made: in the private directory, a file of ours.
    basic.make_app(db).store.connection()
    with WriteLockHolder(db) as holder:
        proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(db)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        wait_for(lambda: (bells / "turns").exists(), 30, "the turns file")
        holder.release()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and int(out.split()[-1]) == 1
    assert_private(bells)
    assert_private(bells.parent)
    st = os.lstat(bells / "turns")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
