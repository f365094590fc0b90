"""Storage faults, against real files and real `litejobs run` processes.

Long readers beside eight producers (the WAL must shrink back once they let go), a full disk (a
small tmpfs), a read-only directory, file and file system, and files litejobs must refuse
(corrupt, truncated, not SQLite, a newer schema, another program's database). Nothing is mocked:
disks really fill (``mount -t tmpfs``), files are really immutable (``chattr +i``), and every
refusal is checked on the file's bytes (sha256) as well as on the one line the user sees.

Mounting and ``chattr`` need root (CI runs as root); without them those scenarios skip and say
why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import litejobs
from litejobs.store import SCHEMA_VERSION
from tests.apps import basic
from tests.conftest import REPO, JobLog, SupervisorProcess, clean_env, wait_for
from tests.faults.conftest import repetitions
from tests.faults.helpers import integrity, litejobs_cli, one_line_refusal, sql

pytestmark = pytest.mark.timeout(120)

APP_SPEC = "tests.apps.basic:app"
MB = 1024 * 1024
#: The WAL size above which the supervisor's periodic checkpoint truncates it.
WAL_BOUND = 64 * MB


# --- helpers ---------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Runs:
    """`litejobs run` processes on any database path (the tmpfs scenarios put it elsewhere
    than conftest's ``db_path``); each is SIGKILLed with its group at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[SupervisorProcess] = []

    def start(self, db: Path, workers: int = 2, *config: str) -> SupervisorProcess:
        n = len(self.procs)
        cfg = self.tmp / f"run-{n}.toml"
        cfg.write_text("\n".join([f'app = "{APP_SPEC}"', *config]) + "\n")
        log_path = self.tmp / f"run-{n}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers",
                 str(workers), "--config", str(cfg)],
                cwd=REPO, env=clean_env(db), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        sup = SupervisorProcess(proc, log_path, time.monotonic())
        self.procs.append(sup)
        wait_for(lambda: "serving" in sup.output() or not sup.running(), 30,
                 "litejobs run to start serving", details=sup.output)
        if not sup.running():
            pytest.fail(f"litejobs run exited at start ({proc.returncode}):\n{sup.output()}",
                        pytrace=False)
        return sup

    def stop(self) -> None:
        for sup in self.procs:
            sup.kill_group()

    def details(self) -> str:
        return "\n".join(f"--- litejobs run #{n} ---\n{s.output()[-6000:]}"
                         for n, s in enumerate(self.procs))


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    r = Runs(tmp_path)
    yield r
    r.stop()


def _mount_tmpfs(target: Path, size: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): "
                    f"{proc.stderr.strip()}")


def _umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        # still busy (a process the test could not end): detach it, it goes when they do
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Factory: ``tmpfs(name, size)`` mounts a tmpfs of ``size`` at tmp_path/name; every
    mount is unmounted at teardown, whatever happened (after the `runs` fixture's
    processes are killed, when that fixture was requested first)."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        target = tmp_path / name
        _mount_tmpfs(target, size)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        _umount(target)


def remount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True,
                   capture_output=True)


def chattr(path: Path, flag: str) -> bool:
    """``chattr flag path``; False when the tool or the file system does not support it."""
    try:
        proc = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return proc.returncode == 0


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """``immutable(path)``: ``chattr +i`` (read-only even for root); undone at teardown."""
    frozen: list[Path] = []

    def freeze(path: Path) -> None:
        if not chattr(path, "+i"):
            pytest.skip(f"chattr +i is not available on {path}'s file system; as root, chmod "
                        "alone cannot make a file read-only")
        frozen.append(path)

    yield freeze
    for path in reversed(frozen):
        chattr(path, "-i")


def make_litejobs_db(path: Path, jobs: int = 300, pad: int = 2000) -> None:
    """A healthy litejobs file with ``jobs`` queued jobs, checkpointed into the main file."""
    app = litejobs.App(path)
    app.enqueue_many([litejobs.Prepared("basic.add", ("x" * pad, str(i)), {})
                      for i in range(jobs)])
    app.store.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def wal_size(db: Path) -> int:
    try:
        return os.path.getsize(f"{db}-wal")
    except OSError:
        return 0


# --- 1. long readers beside eight producers ----------------------------------------------------

READER = r"""
import json, os, sqlite3, sys, time
db, stop, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
conn = sqlite3.connect(db, isolation_level=None, timeout=60)
count, longest, peak = 0, 0.0, 0
while not os.path.exists(stop):
    conn.execute("BEGIN")
    began = time.monotonic()
    conn.execute("SELECT count(*), coalesce(max(id), 0) FROM jobs").fetchone()
    while time.monotonic() - began < hold and not os.path.exists(stop):
        try:
            peak = max(peak, os.path.getsize(db + "-wal"))
        except OSError:
            pass
        time.sleep(0.02)
    conn.execute("COMMIT")
    count += 1
    longest = max(longest, time.monotonic() - began)
conn.close()
print(json.dumps({"transactions": count, "longest": longest, "wal_peak": peak}))
"""

PRODUCER = r"""
import json, sys, time
from tests.apps import basic
db, seconds, pad, who = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
app = basic.make_app(db)
ids, errors, worst = [], [], 0.0
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    i += 1
    time.sleep(0.04)  # a web worker's pace, not a benchmark's
    began = time.monotonic()
    try:
        ids.append(app.enqueue("basic.add", args=[f"{who}-{i}-", "x" * pad]).id)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    worst = max(worst, time.monotonic() - began)
print(json.dumps({"ids": ids, "errors": errors, "worst": worst}))
"""


@pytest.mark.slow
def test_producers_and_long_readers(runs, tmp_path, db_path, report) -> None:
    """8 producers + long read transactions: no producer error, WAL shrinks once readers go"""
    producers_n = 8
    # Long enough that the supervisor's checkpoint (every 10 s) meets the reader mid-traffic.
    seconds = repetitions(25, 14)
    pad = 50_000  # each job writes its ~50 KB row three times and a ~50 KB result once
    app = basic.make_app(db_path)
    sup = runs.start(db_path, workers=2)
    stop = tmp_path / "reader.stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db_path), str(stop), "1.5"],
                              cwd=REPO, env=clean_env(db_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    producers = [
        subprocess.Popen([sys.executable, "-c", PRODUCER, str(db_path), str(seconds),
                          str(pad), f"p{p}"], cwd=REPO, env=clean_env(db_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
        for p in range(producers_n)
    ]
    peak = 0

    def sample_wal() -> None:
        nonlocal peak
        peak = max(peak, wal_size(db_path))

    ids: list[int] = []
    errors: list[str] = []
    worst = 0.0
    try:
        outputs = []
        for proc in producers:
            while proc.poll() is None:
                sample_wal()
                time.sleep(0.05)
            outputs.append((proc, *proc.communicate(timeout=10)))
        for proc, out, err in outputs:
            assert proc.returncode == 0, err
            figures = json.loads(out)
            ids += figures["ids"]
            errors += figures["errors"]
            worst = max(worst, figures["worst"])
        enqueued = len(ids)
        assert errors == [], errors[:5]
        assert len(set(ids)) == enqueued > producers_n * seconds * 5

        def all_done() -> bool:
            sample_wal()
            return app.stats()["states"]["succeeded"] == enqueued

        # Every job finishes while the reader still holds its transactions.
        wait_for(all_done, 90, f"all {enqueued} jobs to succeed beside the long reader",
                 details=lambda: f"{app.stats()}\n{runs.details()}")
        assert reader.poll() is None, reader.communicate()
    finally:
        stop.touch()
        for proc in producers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    held = json.loads(out)
    assert held["transactions"] >= 2 and held["longest"] >= 1.0, held
    peak = max(peak, held["wal_peak"])

    let_go = time.monotonic()
    # (SQLite's journal_size_limit cuts a reset WAL to exactly 64 MB; the supervisor's
    # TRUNCATE checkpoint, every 10 s, to zero.)
    wait_for(lambda: wal_size(db_path) <= WAL_BOUND, 30,
             "the WAL to shrink to 64 MB or less after the reader let go",
             details=lambda: f"WAL {wal_size(db_path)} bytes\n{runs.details()}")
    shrink = time.monotonic() - let_go
    assert sup.running()

    rows = sql(db_path, "SELECT id, state, attempt, length(result), json_extract(args, '$[0]') "
                        "FROM jobs")
    by_id = {r[0]: r for r in rows}
    lost = [i for i in ids if i not in by_id or by_id[i][1] != "succeeded"
            or by_id[i][3] != len(json.dumps(by_id[i][4] + "x" * pad))]
    duplicates = sum(by_id[i][2] - 1 for i in ids if i in by_id)
    assert lost == [] and duplicates == 0
    assert integrity(db_path) == "ok"
    report(enqueued=enqueued, succeeded=enqueued - len(lost), lost=len(lost),
           duplicates=duplicates, producer_errors=len(errors),
           note=(f"{producers_n} producer processes for {seconds} s, ~{pad // 1000} KB "
                 "payloads, 2 workers, "
                 f"a reader process holding {held['transactions']} back-to-back read "
                 f"transactions of {held['longest']:.1f} s; WAL peak, and seconds until it "
                 "was <= 64 MB once the reader let go, below; the slowest enqueue includes "
                 "waits on the supervisor's TRUNCATE checkpoint, which holds writers back "
                 "until the readers move on (what bounds the WAL under constant reads); "
                 "duplicates counted from attempt numbers"),
           wal_peak_mb=round(peak / MB, 1), wal_shrunk_after_s=round(shrink, 1),
           slowest_enqueue_s=round(worst, 2))
    runs.stop()
    for suffix in ("", "-wal", "-shm"):  # hundreds of MB: do not keep them in pytest's tmp
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


# --- 2. disk full --------------------------------------------------------------------------------


def fill_up(path: Path) -> int:
    """Write zeros to ``path`` until the file system is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * 4096
    with open(path, "ab", buffering=0) as f:
        try:
            while True:
                written += f.write(chunk)
        except OSError:
            pass
    return written


@pytest.mark.slow
def test_disk_full(runs, tmpfs, tmp_path, report) -> None:
    """Disk full (3 MB tmpfs): StorageFull to producers, supervisor stays up, work resumes"""
    disk = tmpfs("disk", "3m")
    db = disk / "jobs.db"
    log = JobLog(tmp_path / "jobs.log")  # beside the disk, not on it
    app = basic.make_app(db)
    sup = runs.start(db, workers=2)
    workers_before = sup.worker_pids()
    assert workers_before

    committed: list[int] = []
    full: list[str] = []
    other: list[str] = []

    def enqueue(i: int) -> None:
        try:
            committed.append(app.enqueue("basic.logged", args=[str(log), 0.05],
                                         kwargs={"tag": [i, "p" * 16_000]}).id)
        except litejobs.StorageFull as exc:
            full.append(str(exc))
        except Exception as exc:
            other.append(f"{type(exc).__name__}: {exc}")

    i = 0
    while not full and not other and i < 2000:
        enqueue(i)
        i += 1
    assert other == [], other
    assert full, f"3 MB never filled after {i} enqueues"
    message = full[0]
    assert str(db) in message and "full" in message and "Traceback" not in message
    assert len(message.splitlines()) == 1
    # Take the last free bytes too, so nothing on the disk can grow while it is "full".
    fill_up(disk / "filler")
    for j in range(5):
        enqueue(i + j)  # a committed one (space reused inside the WAL) is fine; it must run
    assert other == [], other
    # Regression: a checkpoint that cannot grow the database file raised a raw apsw.FullError,
    # which killed the supervisor (its loop survives only StorageError).
    with pytest.raises(litejobs.StorageFull):
        app.store.checkpoint()

    # The supervisor meets the full disk too (it records outcomes and claims), logs it, and
    # stays up retrying; its workers stay alive.
    wait_for(lambda: sup.output().count("is full") >= 3 or not sup.running(), 30,
             "the supervisor to log the full disk and retry", details=runs.details)
    assert sup.running(), sup.output()
    assert "Traceback" not in sup.output()
    assert sup.worker_pids() == workers_before, "workers were lost or replaced"
    doctor = litejobs_cli("doctor", "--database", db, db=db, cwd=tmp_path)
    assert doctor.returncode == 1 and "free" in doctor.stdout, doctor.stdout + doctor.stderr

    # Space returns: work resumes, every committed job succeeds, enqueue works again.
    remount(disk, "size=20m")
    (disk / "filler").unlink()
    wait_for(lambda: all(app.get_job(j).state is litejobs.State.SUCCEEDED for j in committed),
             60, "every committed job to succeed once space returned",
             details=lambda: f"{app.stats()}\n{runs.details()}")
    after = [app.enqueue("basic.logged", args=[str(log)], kwargs={"tag": ["after", n]})
             for n in range(5)]
    for job in after:
        job.result(timeout=30)
    committed += [j.id for j in after]
    assert sup.running()

    starts: dict[int, int] = {}
    for r in log.starts():
        starts[r["id"]] = starts.get(r["id"], 0) + 1
    ends = {r["id"] for r in log.ends()}
    lost = [j for j in committed if j not in ends
            or app.get_job(j).state is not litejobs.State.SUCCEEDED]
    duplicates = sum(n - 1 for n in starts.values())
    assert lost == [] and duplicates == 0, (lost, starts)
    app.store.close()
    runs.stop()
    assert integrity(db) == "ok"
    report(enqueued=len(committed), succeeded=len(committed) - len(lost), lost=len(lost),
           duplicates=duplicates, producer_errors=len(full),
           note=("a 3 MB tmpfs filled by enqueues: every failed enqueue raised StorageFull "
                 "(the producer errors counted here, by design), none another error; the "
                 "supervisor logged the full disk, kept its workers and retried each second; "
                 "after a remount to 20 MB all committed jobs ran once"),
           full_disk_errors_logged=sup.output().count("is full"))


# --- 3. read-only directory, file and file system --------------------------------------------


def assert_refused(db: Path, tmp_path: Path, *fragments: str) -> str:
    """App.enqueue and `litejobs run` refuse ``db`` with a StorageError naming it."""
    with pytest.raises(litejobs.StorageError) as info:
        basic.make_app(db).enqueue("basic.add", args=[1, 2])
    message = str(info.value)
    assert not isinstance(info.value, litejobs.StorageFull)
    assert str(db) in message and len(message.splitlines()) == 1, message
    assert any(f in message for f in fragments), message
    proc = litejobs_cli("run", "--app", APP_SPEC, "--workers", "1", db=db, cwd=tmp_path,
                        timeout=30)
    one_line_refusal(proc, str(db))
    assert any(f in proc.stderr for f in fragments), proc.stderr
    return message


def test_read_only_directory_file_and_mount(tmp_path, immutable, tmpfs, report) -> None:
    """Read-only directory, file and file system: a clear StorageError, file untouched"""
    refusals = 0
    # A read-only directory: SQLite cannot create the -wal and -shm files beside the file.
    ro_dir = tmp_path / "ro-dir"
    ro_dir.mkdir()
    db = ro_dir / "jobs.db"
    make_litejobs_db(db, jobs=10)
    before = sha256(db)
    immutable(ro_dir)
    assert_refused(db, tmp_path, "read-only", "not writable")
    refusals += 2
    assert sha256(db) == before
    assert sorted(p.name for p in ro_dir.iterdir()) == ["jobs.db"]
    chattr(ro_dir, "-i")
    assert basic.make_app(db).get_job(1) is not None  # usable again once the cause is gone

    # A read-only file in a writable directory.
    ro_file = tmp_path / "ro-file"
    ro_file.mkdir()
    db = ro_file / "jobs.db"
    make_litejobs_db(db, jobs=10)
    before = sha256(db)
    immutable(db)
    assert_refused(db, tmp_path, "permission denied", "read-only")
    refusals += 2
    assert sha256(db) == before
    # Nothing is created beside it by the refusal but SQLite's own (empty) -wal/-shm.
    leftovers = {p.name for p in ro_file.iterdir()} - {"jobs.db", "jobs.db-wal", "jobs.db-shm"}
    assert leftovers == set(), leftovers
    assert wal_size(db) == 0
    chattr(db, "-i")
    job = basic.make_app(db).enqueue("basic.add", args=[1, 2])
    assert job.id == 11
    assert integrity(db) == "ok"

    # A read-only file system (a tmpfs remounted ro).
    disk = tmpfs("ro-mount", "4m")
    db = disk / "jobs.db"
    make_litejobs_db(db, jobs=10)
    before = sha256(db)
    remount(disk, "ro")
    assert_refused(db, tmp_path, "Read-only file system", "read-only")
    refusals += 2
    assert sha256(db) == before
    remount(disk, "rw")
    assert integrity(db) == "ok"
    report(note=f"{refusals} refusals (App.enqueue and `litejobs run` for each of a chattr +i "
                "directory, a chattr +i file, a tmpfs remounted read-only): one line, a "
                "StorageError, sha256 unchanged, usable again once writable",
           refusals=refusals, bytes_changed=0)


# --- 4. files litejobs must refuse ---------------------------------------------------------------


def _corrupt(path: Path) -> None:
    make_litejobs_db(path)
    page = 4096
    size = path.stat().st_size
    garbage = bytes((i * 7 + 13) % 256 for i in range(page))
    with open(path, "r+b") as f:
        for n in range(size // page // 3, size // page // 3 + 20):
            f.seek(n * page)
            f.write(garbage)


def _truncated(path: Path) -> None:
    make_litejobs_db(path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _not_sqlite(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 40)


def _newer(path: Path) -> None:
    make_litejobs_db(path, jobs=10)
    sql(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def _foreign(path: Path) -> None:
    # Python's sqlite3: really another program's library (no litejobs connection is open)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupt": (_corrupt, "corrupt"),
    "truncated": (_truncated, "corrupt"),
    "not-sqlite": (_not_sqlite, "not a SQLite database"),
    "newer-schema": (_newer, "newer litejobs"),
    "foreign": (_foreign, "another program"),
}


def test_refuses_bad_files_untouched(tmp_path, report) -> None:
    """Corrupt, truncated, non-SQLite, newer-schema, foreign files: refused, bytes unchanged"""
    refusals = 0
    changed: list[str] = []
    for kind, (make, words) in BAD_FILES.items():
        folder = tmp_path / kind
        folder.mkdir()
        db = folder / "jobs.db"
        make(db)
        before = sha256(db)
        for command in ("run", "check"):
            proc = litejobs_cli(command, "--app", APP_SPEC, db=db, cwd=folder, timeout=30)
            one_line_refusal(proc, str(db), words)
            refusals += 1
        doctor = litejobs_cli("doctor", "--database", db, db=db, cwd=folder)
        assert doctor.returncode == 1, (kind, doctor.stdout, doctor.stderr)
        assert "Traceback" not in doctor.stdout + doctor.stderr
        failing = [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
        assert failing and words in failing[-1], (kind, doctor.stdout)
        refusals += 1
        if kind not in ("corrupt", "truncated"):
            # A producer checks what a file is, not every page: quick_check is O(file), so
            # only `run`, `check` and `doctor` run it (SQLite itself still refuses any
            # corrupt page a statement touches).
            with pytest.raises(litejobs.StorageError, match=words):
                litejobs.App(db).enqueue("basic.add", args=[1, 2])
            refusals += 1
        if sha256(db) != before:
            changed.append(kind)
        # SQLite's readers of a WAL-mode file may leave an empty -wal and a -shm; nothing
        # else appears and no page is ever written to the WAL.
        assert {p.name for p in folder.iterdir()} <= {"jobs.db", "jobs.db-wal", "jobs.db-shm"}
        assert wal_size(db) == 0, kind
        if kind in ("newer-schema", "foreign"):
            assert integrity(db) == "ok"
    assert changed == []
    report(note=f"{len(BAD_FILES)} files ({', '.join(BAD_FILES)}) each refused by `litejobs "
                "run`, `litejobs check` (one line, no traceback) and `litejobs doctor` (exit 1 "
                "naming the problem); App.enqueue refuses the last three with StorageError (a "
                "producer checks what a file is, not every page: quick_check is O(file)); "
                "sha256 unchanged",
           refusals=refusals, bytes_changed=len(changed))


def test_refusal_before_anything_is_created_beside_a_read_only_file(tmp_path,
                                                                     immutable) -> None:
    """`litejobs run` on a read-only file refuses before making its wake-up socket dir."""
    db = tmp_path / "jobs.db"
    make_litejobs_db(db, jobs=1)
    immutable(db)
    one_line_refusal(litejobs_cli("run", "--app", APP_SPEC, db=db, cwd=tmp_path, timeout=30),
                     str(db))
    assert not Path(f"{db}-bells").exists()


def test_read_only_directory_with_wal_present(tmp_path, immutable) -> None:
    """A read-only directory whose -wal/-shm exist (a web app has the file open): `litejobs
    run` refuses in one line naming the directory, never with a traceback."""
    # A short path, so the wake-up sockets' directory goes beside the file: under pytest's
    # tmp_path it crossed the socket-address limit once pytest's run number reached 1000
    # (/tmp/pytest-of-root/pytest-1000/...), and the sockets went to the per-user fallback.
    folder = Path(tempfile.mkdtemp(prefix="ro-", dir="/tmp")) / "app"
    folder.mkdir()
    db = folder / "jobs.db"
    app = basic.make_app(db)
    app.enqueue("basic.add", args=[1, 2])  # keeps -wal and -shm open, as a web app would
    try:
        immutable(folder)
        proc = litejobs_cli("run", "--app", APP_SPEC, "--workers", "1", db=db, cwd=tmp_path,
                            timeout=30)
        one_line_refusal(proc, str(folder), "writable")
        assert not Path(f"{db}-bells").exists()
        # the producer that holds the file open is not disturbed
        assert app.enqueue("basic.add", args=[3, 4]).id == 2
    finally:
        app.store.close()
        chattr(folder, "-i")
        shutil.rmtree(folder.parent, ignore_errors=True)


def test_disk_full_before_the_shm_exists_is_storage_full(tmpfs, tmp_path) -> None:
    """A full disk when no process has the file open (no -shm yet): SQLite cannot size the
    -shm and reports a bare "disk I/O error"; producers and readers get StorageFull naming the
    file, and the file works again once space returns."""
    disk = tmpfs("disk", "1m")
    db = disk / "jobs.db"
    producer = basic.make_app(db)
    first = producer.enqueue("basic.add", args=[1, 2])
    producer.store.close()  # the last connection: SQLite removes the -wal and the -shm
    assert not Path(f"{db}-shm").exists()
    fill_up(disk / "filler")
    for attempt in (lambda app: app.enqueue("basic.add", args=[3, 4]),
                    lambda app: app.get_job(first.id)):
        app = basic.make_app(db)
        with pytest.raises(litejobs.StorageFull) as info:
            attempt(app)
        message = str(info.value)
        assert str(db) in message and "full" in message, message
        assert "I/O" not in message and len(message.splitlines()) == 1, message
        app.store.close()
    (disk / "filler").unlink()
    app = basic.make_app(db)
    assert app.get_job(first.id).args == [1, 2]
    assert app.enqueue("basic.add", args=[3, 4]).id == first.id + 1
    app.store.close()
    assert integrity(db) == "ok"
