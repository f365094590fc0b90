"""`litejobs doctor` against real files, real mounts and a real supervisor.

Exit 0 with warnings allowed on a usable database, exit 1 when something is broken; each check
names what it found and what to do. Nothing is mocked: the full disk is a real small tmpfs, the
read-only directory is really immutable (``chattr +i``), and the file system classification
is tested on the function that decides, with the real /proc/mounts for the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest

import litejobs
from litejobs.doctor import NETWORK_FS, filesystem_of, is_network_fs
from litejobs.store import SCHEMA_VERSION, QueueLimits
from tests.conftest import clean_env

pytestmark = pytest.mark.timeout(60)

CHECKS = ["filesystem", "directory", "bells", "permissions", "integrity", "schema", "wal",
          "wal_size", "disk", "supervisors", "leases"]


def doctor(db: Path, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "litejobs", "doctor", "--database", str(db),
                           *extra], cwd=cwd or db.parent, env=clean_env(db),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def verdicts(db: Path, *extra: str) -> tuple[int, dict[str, tuple[str, str]]]:
    """(exit code, {check: (verdict, message)}) from ``litejobs doctor --json``."""
    proc = doctor(db, "--json", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    checks = json.loads(proc.stdout)
    return proc.returncode, {c["check"]: (c["verdict"], c["message"]) for c in checks}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_db(path: Path, jobs: int = 5) -> litejobs.App:
    app = litejobs.App(path)
    app.enqueue_many([litejobs.Prepared("t.work", (i,), {}) for i in range(jobs)])
    return app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


# --- healthy -------------------------------------------------------------------------------------


def test_healthy_database_passes_with_warnings_allowed(db) -> None:
    make_db(db).store.close()
    before = sha256(db)
    proc = doctor(db)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(line[:4] in ("ok  ", "WARN") for line in lines), proc.stdout
    assert "FAIL" not in proc.stdout and "Traceback" not in proc.stderr
    # no supervisor runs here: a warning that says what to do, not a failure
    supervisors = next(line for line in lines if "supervisors" in line)
    assert supervisors.startswith("WARN") and "litejobs run" in supervisors
    assert sha256(db) == before  # doctor never writes to the database


def test_json_shape(db) -> None:
    make_db(db).store.close()
    proc = doctor(db, "--json")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(proc.stdout)
    assert isinstance(checks, list)
    for c in checks:
        assert set(c) == {"check", "verdict", "message"}, c
        assert c["verdict"] in ("ok", "warn", "fail")
        assert isinstance(c["message"], str) and c["message"]
    names = [c["check"] for c in checks]
    assert names == CHECKS  # a stable order
    assert dict((c["check"], c["verdict"]) for c in checks)["integrity"] == "ok"


def test_running_supervisor_is_seen(start_supervisor, app, db_path) -> None:
    start_supervisor()
    assert app.enqueue("basic.add", args=[1, 2]).result(timeout=30) == 3
    code, checks = verdicts(db_path)
    assert code == 0
    assert checks["supervisors"][0] == "ok" and "1 running" in checks["supervisors"][1]
    assert checks["leases"][0] == "ok"
    assert checks["bells"][0] == "ok", checks["bells"]  # made by the supervisor: private


def test_allow_network_fs_flag_is_accepted(db) -> None:
    make_db(db).store.close()
    code, checks = verdicts(db, "--allow-network-fs")
    assert code == 0 and checks["filesystem"][0] == "ok"


# --- broken: exit 1 ------------------------------------------------------------------------------


def _corrupt(path: Path) -> None:
    app = litejobs.App(path)
    app.enqueue_many([litejobs.Prepared("t.work", ("x" * 2000, i), {}) for i in range(300)])
    app.store.close()
    page, size = 4096, path.stat().st_size
    with open(path, "r+b") as f:
        for n in range(size // page // 3, size // page // 3 + 20):
            f.seek(n * page)
            f.write(bytes((i * 7 + 13) % 256 for i in range(page)))


@pytest.mark.parametrize(("make", "words"), [
    (_corrupt, "corrupt"),
    (lambda p: p.write_bytes(b"id,name\n1,Ada\n" * 100), "not a SQLite database"),
], ids=["corrupt", "not-sqlite"])
def test_broken_file_fails_naming_the_problem(db, make: Callable[[Path], None],
                                              words: str) -> None:
    make(db)
    before = sha256(db)
    proc = doctor(db)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    fail = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1 and "integrity" in fail[0] and words in fail[0], proc.stdout
    assert str(db) in fail[0]
    assert sha256(db) == before


def test_newer_schema_fails(db) -> None:
    make_db(db).store.close()
    conn = apsw.Connection(str(db))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    code, checks = verdicts(db)
    assert code == 1
    assert checks["integrity"][0] == "fail" and "newer litejobs" in checks["integrity"][1]


def test_missing_directory_fails(tmp_path) -> None:
    db = tmp_path / "nowhere" / "jobs.db"
    proc = doctor(db, cwd=tmp_path)
    assert proc.returncode == 1
    assert any(line.startswith("FAIL") and "does not exist" in line
               for line in proc.stdout.splitlines()), proc.stdout
    assert not db.parent.exists()


def test_missing_database_only_warns_and_is_not_created(db) -> None:
    code, checks = verdicts(db)
    assert code == 0
    assert checks["database"][0] == "warn" and "does not exist" in checks["database"][1]
    assert not db.exists()


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    frozen: list[Path] = []

    def freeze(path: Path) -> None:
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is unavailable here; as root, chmod cannot make a file "
                        "read-only")
        frozen.append(path)

    yield freeze
    for path in frozen:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_read_only_directory_and_file_fail(tmp_path, immutable) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "jobs.db"
    make_db(db).store.close()
    immutable(folder)
    code, checks = verdicts(db)
    assert code == 1
    assert checks["directory"][0] == "fail" and "not writable" in checks["directory"][1]
    subprocess.run(["chattr", "-i", str(folder)], check=True)
    immutable(db)
    code, checks = verdicts(db)
    assert code == 1
    assert checks["permissions"][0] == "fail", checks["permissions"]


# --- warnings: exit 0 ----------------------------------------------------------------------------


def test_expired_leases_warn(db) -> None:
    app = make_db(db, jobs=3)
    past = time.time() - 100
    rows = app.store.write(lambda tx: tx.claim(["gone:1:ab:w1", "gone:1:ab:w2"],
                                               [QueueLimits("default")], past, 30))
    assert len(rows) == 2
    app.store.close()
    code, checks = verdicts(db)
    assert code == 0
    verdict, message = checks["leases"]
    assert verdict == "warn" and "2 running job(s) have expired leases" in message
    assert "start one" in message


def test_mode_644_warns_and_600_is_ok(db) -> None:
    make_db(db).store.close()
    os.chmod(db, 0o644)
    code, checks = verdicts(db)
    assert code == 0
    assert checks["permissions"][0] == "warn" and "644" in checks["permissions"][1]
    assert "chmod 600" in checks["permissions"][1]
    os.chmod(db, 0o600)
    code, checks = verdicts(db)
    assert checks["permissions"][0] == "ok"


def test_large_wal_warns(db) -> None:
    """A WAL over 64 MB (a reader pinned it while 70 MB were written) is a warning."""
    app = make_db(db, jobs=1)
    reader = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM jobs").fetchall()
        for _ in range(10):
            app.enqueue_many([litejobs.Prepared("t.work", ("x" * 1_000_000,), {})
                              for _ in range(7)])
        assert Path(f"{db}-wal").stat().st_size > 64 * 1024 * 1024
        code, checks = verdicts(db)
    finally:
        reader.execute("COMMIT")
        reader.close()
        app.store.close()
    assert code == 0
    assert checks["wal_size"][0] == "warn" and "reader" in checks["wal_size"][1]
    for suffix in ("", "-wal", "-shm"):  # ~140 MB: do not keep them in pytest's tmp
        Path(f"{db}{suffix}").unlink(missing_ok=True)


# --- disk and file system --------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "small"
    target.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_nearly_full_disk_fails_on_a_real_small_tmpfs(small_tmpfs) -> None:
    db = small_tmpfs / "jobs.db"
    make_db(db).store.close()
    assert filesystem_of(str(small_tmpfs)) == (str(small_tmpfs), "tmpfs")
    code, checks = verdicts(db)
    assert code == 1
    assert checks["filesystem"] == ("ok", f"tmpfs at {small_tmpfs}")
    verdict, message = checks["disk"]
    assert verdict == "fail" and "free" in message and "StorageFull" in message


def test_filesystem_of_agrees_with_findmnt(tmp_path) -> None:
    findmnt = shutil.which("findmnt")
    if findmnt is None:
        pytest.skip("findmnt (util-linux) is not installed")
    out = subprocess.run([findmnt, "-n", "-o", "TARGET,FSTYPE", "--target", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert filesystem_of(str(tmp_path)) == (out[0], out[1])
    assert not is_network_fs(out[1])


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "nfsd", "cifs", "smb3", "smbfs", "9p",
                                    "ceph", "glusterfs", "lustre", "fuse.sshfs", "fuse.rclone",
                                    "gfs2", "ocfs2"])
def test_network_file_systems_are_recognised(fstype: str) -> None:
    assert is_network_fs(fstype)


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "f2fs",
                                    "apfs", "fuse.portal", "ramfs"])
def test_local_file_systems_are_not(fstype: str) -> None:
    assert not is_network_fs(fstype)


def test_every_listed_network_fs_is_recognised() -> None:
    assert all(is_network_fs(t) for t in NETWORK_FS)


# --- the wake-up directory ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["another user's", "writable by all", "a link for turns"])
def test_an_unsafe_bells_directory_fails_saying_what_to_do(db, how: str) -> None:
    make_db(db).store.close()
    bells = Path(f"{db}-bells")
    bells.mkdir(mode=0o700)
    if how == "another user's":
        if os.geteuid() != 0:
            pytest.skip("making a directory of another user needs root")
        os.chown(bells, 65534, 65534)
        expected = "owned by uid 65534"
    elif how == "writable by all":
        bells.chmod(0o777)
        expected = "writable by other users (mode 777)"
    else:
        (bells / "turns").symlink_to(db)
        expected = f"{bells}/turns is not a regular file"
    code, checks = verdicts(db)
    assert code == 1
    verdict, message = checks["bells"]
    assert verdict == "fail" and expected in message, message
    assert f"rm -r {bells}" in message and "litejobs run" in message, message
