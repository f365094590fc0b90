"""Process faults: real `litejobs run` processes, real signals, real SQLite files and a real
PostgreSQL (each scenario runs on both stores: the ``database`` fixture; the PostgreSQL runs of
the two chaos scenarios repeat fewer times under CI, see ``pg_fewer``).

Every scenario ends the same way: the supervisors are stopped, the database passes
``PRAGMA integrity_check`` (read-only connection), and an audit of the task log
(``tests/apps/faultapp.py``: one line per start and per end of every run, with job id,
attempt, worker pid and times) is checked against the database:

- *lost*: jobs that were committed but did not end as expected (succeeded, or failed with the
  reason for the poison tasks);
- *duplicates*: runs of a job beyond the one that counted, not explained by the test (or the
  supervisor, for a drain) killing or freezing the process while it ran that run or before it
  could report it — a process runs its jobs one after the other, so that run must be the last
  one the killed process logged;
- *overlaps*: two runs of one job at the same time; allowed only where a frozen process kept
  running a rescued attempt (fencing then refuses its outcome).

Waiting is on conditions with deadlines; only the moments of the kills (and the producers'
choices) are random, drawn from the ``seed`` fixture (printed; ``LITEJOBS_SEED=N`` replays).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.apps import faultapp
from tests.conftest import REPO, SupervisorProcess, alive, clean_env, wait_for
from tests.faults.conftest import repetitions

pytestmark = pytest.mark.timeout(300)

APP_SPEC = "tests.apps.faultapp:app"
TERMINAL = ("succeeded", "failed", "cancelled")
#: For the kill scenarios: high enough that a job unlucky enough to be caught by several kills
#: is not failed for it (each kill counts as a crash of the job).
CRASH_LIMIT = 10


# --- the database, read-only -------------------------------------------------------------------


def _ro(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


class PgRow(tuple):  # type: ignore[type-arg]
    """A PostgreSQL row read by ``query``, by index or by column name as a ``sqlite3.Row``."""

    names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            key = self.names.index(key)
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _pg_query(url: str, sql: str, params: Iterable[Any]) -> list[Any]:
    """The same read on the PostgreSQL store's tables (a read-only transaction of its own)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.read_only = True
        cur = conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        if cur.description is None:
            return []
        names = tuple(c.name for c in cur.description)
        rows = []
        for values in cur.fetchall():
            row = PgRow(values)
            row.names = names
            rows.append(row)
        return rows


def query(db: Path | str, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    if isinstance(db, str):
        return _pg_query(db, sql, params)
    conn = _ro(db)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def count_pending(db: Path | str, ids: Iterable[int]) -> int:
    """How many jobs of ``ids`` are not terminal yet (a job missing from the file is not
    pending: the audit reports it as lost)."""
    wanted = set(ids)
    rows = query(db, f"SELECT id FROM jobs WHERE state NOT IN {TERMINAL}")
    return sum(1 for r in rows if r[0] in wanted)


def integrity(db: Path | str) -> str:
    """``PRAGMA integrity_check`` on a read-only connection: "ok" or the problems found. On
    PostgreSQL (no file to check) the store's own ``quick_check``: its tables all there and
    no workflow step waiting on nothing."""
    if isinstance(db, str):
        from litejobs.store.postgres import PostgresStore

        store = PostgresStore(db)
        try:
            return "; ".join(store.quick_check()) or "ok"
        finally:
            store.close()
    return "; ".join(str(r[0]) for r in query(db, "PRAGMA integrity_check"))


# --- the task log ------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of a job's task in one process, as the task log tells it."""

    id: int
    attempt: int
    pid: int
    start: float
    end: float | None = None
    tag: Any = None


def read_runs(log: Path) -> dict[int, list[Run]]:
    """Runs by job id, each job's sorted by start time."""
    runs: dict[tuple[int, int, int], Run] = {}
    try:
        text = log.read_text()
    except FileNotFoundError:
        return {}
    for line in text.splitlines(keepends=True):
        assert line.endswith("\n"), f"a torn line in the task log: {line!r}"
        rec = json.loads(line)
        key = (rec["id"], rec["attempt"], rec["pid"])
        if rec["event"] == "start":
            assert key not in runs, f"two starts of one run: {rec}"
            runs[key] = Run(rec["id"], rec["attempt"], rec["pid"], rec["start"],
                            tag=rec.get("tag"))
        else:
            assert key in runs and runs[key].end is None, f"an end without its start: {rec}"
            runs[key].end = rec["end"]
    out: dict[int, list[Run]] = defaultdict(list)
    for run in runs.values():
        out[run.id].append(run)
    for job_runs in out.values():
        job_runs.sort(key=lambda r: r.start)
    return out


def started(log: Path, job_id: int, attempt: int | None = None) -> list[Run]:
    return [r for r in read_runs(log).get(job_id, [])
            if attempt is None or r.attempt == attempt]


@dataclass
class Audit:
    enqueued: int
    succeeded: int
    lost: list[int]
    runs: int
    killed_reruns: int  # runs beyond the one that counted, cut short by a kill (allowed)
    retried: int  # jobs that needed more than one attempt
    unexplained: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    frozen_overlap: float = 0.0  # seconds a frozen process's run overlapped the rescuer's

    def figures(self) -> dict[str, Any]:
        return {"enqueued": self.enqueued, "succeeded": self.succeeded, "lost": len(self.lost),
                "duplicates": len(self.unexplained)}

    def check(self) -> None:
        assert not self.lost, f"{len(self.lost)} lost jobs: {self.lost[:20]}"
        assert not self.unexplained, "\n".join(self.unexplained[:20])
        assert not self.overlaps, "\n".join(self.overlaps[:20])


def audit(db: Path | str, log: Path, ids: Iterable[int], killed: Mapping[int, float],
          frozen: Mapping[int, float] | None = None,
          groups: Mapping[int, float] | None = None, expect: str = "succeeded") -> Audit:
    """Check every job of ``ids`` against the task log.

    ``killed``: pid -> a moment the process was still alive, just before the test (or the
    supervisor, for a drain) killed it while its supervisor lived on: only its last run may
    have gone unreported. ``groups``: the same for processes killed together with their
    supervisor, which may have held several of their outcomes unrecorded — a worker's
    outcomes are recorded in the order it ran them, so those runs are the last ones it ran
    after its last recorded one. ``frozen``: pid -> when it was frozen; its run may overlap
    the rescuer's. Every job must have ended ``expect`` with exactly one finished run of its
    final attempt; every other run must be explained that way; runs of a job must not
    overlap, except a frozen one's.
    """
    frozen = dict(frozen or {})
    groups = dict(groups or {})
    ids = sorted(set(ids))
    jobs = {r["id"]: r for r in query(db, "SELECT id, state, attempt, error FROM jobs")}
    runs = read_runs(log)
    last_of_pid: dict[int, float] = {}
    for job_runs in runs.values():
        for r in job_runs:
            last_of_pid[r.pid] = max(last_of_pid.get(r.pid, r.start), r.start)
    result = Audit(enqueued=len(ids), succeeded=0, lost=[], runs=0, killed_reruns=0,
                   retried=0)
    finals: dict[int, Run] = {}
    for job_id in ids:
        job = jobs.get(job_id)
        if job is None or job["state"] != expect:
            result.lost.append(job_id)
            continue
        result.succeeded += expect == "succeeded"
        job_runs = runs.get(job_id, [])
        result.runs += len(job_runs)
        result.retried += job["attempt"] > 1
        final = [r for r in job_runs if r.attempt == job["attempt"] and r.end is not None
                 and r.pid not in frozen]
        if len(final) != 1:
            result.unexplained.append(
                f"job {job_id} ended {job['state']} at attempt {job['attempt']} with "
                f"{len(final)} finished runs of that attempt (runs: {job_runs})")
            continue
        finals[job_id] = final[0]
    last_final_of_pid: dict[int, float] = {}
    for r in finals.values():
        last_final_of_pid[r.pid] = max(last_final_of_pid.get(r.pid, r.start), r.start)
    for job_id, final_run in finals.items():
        job_runs = runs[job_id]
        for r in job_runs:
            if r is final_run:
                continue
            if r.pid in killed or r.pid in frozen:
                cut = last_of_pid[r.pid] == r.start
            elif r.pid in groups:
                cut = r.start > last_final_of_pid.get(r.pid, float("-inf"))
            else:
                cut = False
            if cut:
                result.killed_reruns += 1
            else:
                result.unexplained.append(
                    f"job {job_id}: run {r} was not cut short by a kill, yet the job ran "
                    f"again (final run {final_run})")
        # The attempt number is the fencing token: a run that started must keep its own (only
        # a job that never started, in a dead worker's backlog, gives its number back).
        shared = [n for n, k in collections.Counter(r.attempt for r in job_runs).items() if k > 1]
        if shared:
            result.unexplained.append(f"job {job_id}: runs share attempt numbers {shared}: "
                                      f"{job_runs}")
        for a, b in itertools.pairwise(job_runs):
            if a.end is not None:
                a_end = a.end
            else:
                a_end = killed.get(a.pid, groups.get(a.pid, frozen.get(a.pid, float("inf"))))
            if b.start < a_end:
                if a.pid in frozen:
                    result.frozen_overlap = max(result.frozen_overlap,
                                                min(a_end, b.end or a_end) - b.start)
                else:
                    result.overlaps.append(f"job {job_id}: run {b} started while {a} ran")
    return result


# --- processes ---------------------------------------------------------------------------------


def group_members(pgid: int) -> set[int]:
    """Processes of process group ``pgid`` (from /proc)."""
    out: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.add(int(name))
    return out


class Harness:
    """Supervisors and producers of one scenario, all on one database and one task log."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.tmp = tmp_path
        #: A SQLite file, or a PostgreSQL URL (a str: a Path would fold its "//").
        self.db: Path | str = database if "://" in database else tmp_path / "jobs.db"
        self.log = tmp_path / "tasks.log"
        self.supervisors: list[SupervisorProcess] = []
        self.producers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def env(self) -> dict[str, str]:
        return clean_env(self.db, LITEJOBS_TEST_LOG=str(self.log))

    def app(self, durability: str = "full") -> Any:
        return faultapp.make_app(self.db, durability=durability)

    def start(self, workers: int = 2, grace: float | None = None, wait: bool = True,
              **config: Any) -> SupervisorProcess:
        """Start `litejobs run` on the fault app (in its own session); with ``wait``, return
        once it serves."""
        n = len(self.supervisors)
        cfg = self.tmp / f"litejobs-{n}.toml"
        lines = [f'app = "{APP_SPEC}"'] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
        cfg.write_text("\n".join(lines) + "\n")
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--database",
               str(self.db), "--workers", str(workers), "--config", str(cfg)]
        if grace is not None:
            cmd += ["--grace", str(grace)]
        log_path = self.tmp / f"supervisor-{n}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=self.env(), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        sup = SupervisorProcess(proc, log_path, time.monotonic())
        self.supervisors.append(sup)
        if wait:
            wait_for(lambda: "serving" in sup.output() or not sup.running(), 30,
                     "litejobs run to start serving", details=sup.output)
            assert sup.running(), f"litejobs run exited at start:\n{sup.output()}"
        return sup

    def producer(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """A producer process (its own session) printing each returned id to a file."""
        out_path = self.tmp / f"producer-{len(self.producers)}.out"
        cmd = [sys.executable, "-m", "tests.apps.faultapp", "produce", str(self.db), *args]
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=self.env(), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.producers.append((proc, out_path))
        return proc, out_path

    @staticmethod
    def printed(out_path: Path) -> tuple[list[int], list[str]]:
        """The ids a producer printed (whole lines only) and the errors it surfaced."""
        ids: list[int] = []
        errors: list[str] = []
        text = out_path.read_text(errors="replace")
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # cut mid-line by a kill: that enqueue had not been reported
            line = line.strip()
            if line.isdigit():
                ids.append(int(line))
            elif line.startswith("ERR"):
                errors.append(line)
            elif not line.startswith("DONE"):
                errors.append(line)  # a traceback: the producer itself failed
        return ids, errors

    @staticmethod
    def kill_group(pgid: int) -> tuple[float, set[int]]:
        """SIGKILL a whole process group; returns the moment just before and its members.

        The group is stopped first so its members can be listed exactly (no fork slips in
        between); then the one SIGKILL reaches them all at once.
        """
        t = time.time()
        try:
            os.killpg(pgid, signal.SIGSTOP)
        except ProcessLookupError:
            return t, set()
        members = group_members(pgid)
        os.killpg(pgid, signal.SIGKILL)
        return t, members

    def close(self) -> None:
        for sup in self.supervisors:
            sup.kill_group()
        for proc, _ in self.producers:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def h(request: pytest.FixtureRequest, tmp_path: Path, database: str) -> Iterator[Harness]:
    failed_before = request.session.testsfailed
    harness = Harness(tmp_path, database)
    yield harness
    harness.close()
    if request.session.testsfailed > failed_before:  # shown under "Captured stdout teardown"
        for n, sup in enumerate(harness.supervisors):
            print(f"--- litejobs run #{n} (pid {sup.pid}, exit {sup.proc.returncode}) ---")
            print(sup.output()[-20000:])


def waits_for_next_job(worker: int) -> bool:
    """True when a worker process is blocked reading its next job from the supervisor: it
    has sent the outcome of the one before (``read(READ_FD, ...)``, from /proc)."""
    try:
        argv = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
        syscall = Path(f"/proc/{worker}/syscall").read_text().split()
    except OSError:
        return False
    read_fd = int(argv[-3])  # python -c BOOT SPEC READ_FD WRITE_FD
    return len(syscall) > 1 and syscall[0] == "0" and int(syscall[1], 16) == read_fd


def stop(sup: SupervisorProcess, timeout: float = 30) -> int:
    """SIGTERM (drain) and wait; the exit code."""
    sup.send(signal.SIGTERM)
    return sup.wait(timeout)


def wait_terminal(db: Path | str, ids: list[int], timeout: float, sups: list[SupervisorProcess],
                  on_wait: Callable[[], None] | None = None) -> None:
    """Wait until every job of ``ids`` is terminal, failing early if a supervisor died."""
    deadline = time.monotonic() + timeout
    while count_pending(db, ids):
        for sup in sups:
            assert sup.running(), f"the supervisor exited ({sup.proc.returncode}):\n" \
                f"{sup.output()[-5000:]}"
        if time.monotonic() > deadline:
            states = query(db, "SELECT state, count(*) FROM jobs GROUP BY state")
            pytest.fail(f"jobs not terminal after {timeout:g} s: "
                        f"{[tuple(r) for r in states]}\n{sups[-1].output()[-5000:]}",
                        pytrace=False)
        if on_wait is not None:
            on_wait()
        else:
            time.sleep(0.05)


def pg_fewer(h: Harness, full: int, ci: int, pg_ci: int) -> int:
    """``repetitions(full, ci)``, with ``pg_ci`` for the PostgreSQL run under CI: the chaos
    there proves the same rules on the other store, and CI's 2 cores run the suite in ~20 min."""
    return repetitions(full=full, ci=pg_ci if isinstance(h.db, str) else ci)


# --- 1. worker chaos ---------------------------------------------------------------------------


def test_worker_chaos(h: Harness, report: Callable[..., None], seed: int) -> None:
    """Worker chaos: a random worker SIGKILLed every 200-400 ms"""
    n = pg_fewer(h, full=3000, ci=1000, pg_ci=500)
    rng = random.Random(seed)
    app = h.app()
    work = app.tasks["fault.work"]
    ids: list[int] = []
    # Phases of quick jobs (0 s: workers get a prefetched backlog, which a kill returns) and
    # of slower ones (0-40 ms: a kill mostly lands in a running job).
    for first in range(0, n, 250):
        quick = (first // 250) % 2 == 0
        batch = [work.prepare(0.0 if quick else rng.uniform(0, 0.04), tag=i)
                 for i in range(first, min(n, first + 250))]
        ids += [j.id for j in app.enqueue_many(batch)]
    sup = h.start(workers=4, crash_limit=CRASH_LIMIT)
    killed: dict[int, float] = {}
    t0 = time.monotonic()

    def kill_one() -> None:
        time.sleep(rng.uniform(0.2, 0.4))  # the random kill moment
        pids = sorted(sup.worker_pids())
        if pids:
            pid = rng.choice(pids)
            killed[pid] = time.time()
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                del killed[pid]

    wait_terminal(h.db, ids, 240, [sup], on_wait=kill_one)
    elapsed = time.monotonic() - t0
    assert stop(sup) == 0
    assert integrity(h.db) == "ok"
    result = audit(h.db, h.log, ids, killed)
    died = query(h.db, "SELECT count(*) FROM attempts WHERE error LIKE 'WorkerDied%'")[0][0]
    report(**result.figures(), producer_errors=0, workers_killed=len(killed),
           killed_reruns=result.killed_reruns, jobs_retried=result.retried, seed=seed,
           note=f"4 workers, crash_limit={CRASH_LIMIT}, jobs of 0 s and 0-40 ms; "
                f"{len(killed)} workers killed in {elapsed:.0f} s; {result.retried} jobs needed "
                "more than one attempt")
    result.check()
    assert result.succeeded == n
    assert len(killed) >= 5, "too few kills for the scenario to prove anything"
    # Every job that ran again did so because its worker died under it, as recorded.
    assert died >= result.retried


# --- 2. whole-group SIGKILL under load -----------------------------------------------------------


def test_group_kill_under_load(h: Harness, report: Callable[..., None], seed: int) -> None:
    """Whole process group SIGKILLed at random moments, restarted, producers enqueueing"""
    rounds = pg_fewer(h, full=20, ci=6, pg_ci=3)
    rng = random.Random(seed)
    stop_file = h.tmp / "stop-producers"
    for _ in range(2):
        h.producer("--stop", str(stop_file), "--pause", "0.02", "--long", "0.05",
                   "--seed", str(rng.randrange(2**32)))
    killed: dict[int, float] = {}
    t0 = time.monotonic()
    for _ in range(rounds):
        # crash_limit: the job a worker was running when its supervisor died counts that as
        # its worker's death (the jobs sent ahead behind it do not), and a long job may be
        # caught running by several of these kills in a row; by design the default limit of
        # 3 would fail it (see the note).
        sup = h.start(workers=4, wait=False, crash_limit=CRASH_LIMIT)
        time.sleep(rng.uniform(0.1, 2.0))  # a random moment: starting, rescuing, or serving
        at, members = h.kill_group(sup.pid)
        sup.proc.wait(10)
        for pid in members:
            killed[pid] = at
    final = h.start(workers=4, crash_limit=CRASH_LIMIT)
    stop_file.touch()
    for proc, _ in h.producers:
        assert proc.wait(30) == 0
    ids: list[int] = []
    errors: list[str] = []
    for _, out in h.producers:
        got, errs = h.printed(out)
        ids += got
        errors += errs
    assert ids, "the producers enqueued nothing"
    wait_terminal(h.db, ids, 120, [final])
    elapsed = time.monotonic() - t0
    assert stop(final) == 0
    assert integrity(h.db) == "ok"
    every = [r[0] for r in query(h.db, "SELECT id FROM jobs")]
    assert sorted(every) == sorted(set(ids)), "jobs in the database that no producer printed"
    result = audit(h.db, h.log, ids, killed={}, groups=killed)
    rescued = query(h.db, "SELECT count(*) FROM attempts WHERE error LIKE 'WorkerDied%'")[0][0]
    most = query(h.db, "SELECT max(crashes) FROM jobs")[0][0]
    report(**result.figures(), producer_errors=len(errors), restarts=rounds,
           killed_reruns=result.killed_reruns, rescued_attempts=rescued,
           most_rescues_of_one_job=most, seed=seed,
           note=f"{rounds} whole-group SIGKILLs at random moments in {elapsed:.0f} s, 2 "
                f"producers enqueueing throughout; no two runs of a job overlapped; "
                f"crash_limit={CRASH_LIMIT}, since a job running when its supervisor is "
                f"killed counts a worker death (the default of 3 fails a job caught running "
                f"by 3 kills; jobs sent ahead behind it are not counted)")
    result.check()
    assert not errors, errors[:5]


# --- 3. frozen supervisor and worker -------------------------------------------------------------


def test_frozen_supervisor_is_fenced(h: Harness, report: Callable[..., None]) -> None:
    """Frozen supervisor+worker (SIGSTOP past the lease): rescued, stale outcome refused"""
    app = h.app()
    work = app.tasks["fault.work"]
    a = h.start(workers=1, lease=2)
    job = work.enqueue(4.0, tag="frozen")
    (run_a,) = wait_for(lambda: started(h.log, job.id), 15, "the job to start on A",
                        details=a.output)
    frozen_at = time.time()
    os.killpg(a.pid, signal.SIGSTOP)
    b = h.start(workers=1, lease=2)
    # B rescues the job once A's lease has run out, and runs attempt 2 to the end.
    wait_for(lambda: query(h.db, "SELECT state FROM jobs WHERE id = ?", [job.id])[0][0]
             == "succeeded", 30, "B to rescue and finish the job", details=b.output)
    (row,) = query(h.db, "SELECT attempt, leased_by, result FROM jobs WHERE id = ?", [job.id])
    (run_b,) = started(h.log, job.id, attempt=2)
    assert row["attempt"] == 2
    assert f":{b.pid}:" in row["leased_by"], row["leased_by"]
    assert json.loads(row["result"]) == run_b.pid
    assert run_b.start >= frozen_at
    assert run_a.end is None, "A's run finished while frozen"
    rescue = query(h.db, "SELECT outcome, error FROM attempts WHERE job_id = ? AND attempt = 1",
                   [job.id])
    assert [r["outcome"] for r in rescue] == ["failed"]
    assert "lease expired" in rescue[0]["error"]

    # Wake A's worker first: its sleep is over, so it logs its end and reports at once; its
    # outcome then waits in the pipe for A's supervisor, which wakes next.
    os.kill(run_a.pid, signal.SIGCONT)
    wait_for(lambda: started(h.log, job.id, attempt=1)[0].end is not None
             and waits_for_next_job(run_a.pid), 10,
             "A's worker to finish its (stale) run and report it")
    os.killpg(a.pid, signal.SIGCONT)

    # Regression: A resumes with its select() past its deadline, which CPython then ends
    # with no events at all; A used to act on its timers first (renewal: lease lost) and
    # kill the worker, dropping the outcome unrecorded. It must read the outcome and have
    # the store refuse it: attempt 1 becomes 'stale'.
    def settled() -> bool:
        return query(h.db, "SELECT outcome FROM attempts WHERE job_id = ? AND attempt = 1",
                     [job.id])[0][0] == "stale"

    wait_for(settled, 15, "A to report attempt 1 and have it refused as stale",
             details=a.output)
    (after,) = query(h.db, "SELECT state, attempt, leased_by, result, finished_at FROM jobs "
                           "WHERE id = ?", [job.id])
    assert (after["state"], after["attempt"], after["leased_by"], after["result"]) == (
        "succeeded", 2, row["leased_by"], row["result"]), "the stale outcome overwrote B's"
    (stale,) = query(h.db, "SELECT error FROM attempts WHERE job_id = ? AND attempt = 1",
                     [job.id])
    assert "outcome refused" in stale["error"]
    assert stop(a) == 0
    assert stop(b) == 0
    assert integrity(h.db) == "ok"
    result = audit(h.db, h.log, [job.id], killed={}, frozen={run_a.pid: frozen_at})
    result.check()
    assert result.killed_reruns == 1
    report(**result.figures(), producer_errors=0, stale_refused=True,
           frozen_overlap_s=round(result.frozen_overlap, 2),
           note="lease=2 s, job of 4 s; B rescued attempt 1 after its lease ran out and "
                "finished attempt 2; A's late success was refused (attempt 1 'stale'). The "
                "two runs overlapped only while A was frozen")


# --- 4. a job longer than 3 leases ---------------------------------------------------------------


def test_long_job_keeps_its_lease(h: Harness, report: Callable[..., None]) -> None:
    """A job longer than 3 leases keeps its lease by renewal and runs once"""
    lease = 1.0
    app = h.app()
    work = app.tasks["fault.work"]
    sups = [h.start(workers=1, lease=lease) for _ in range(2)]  # the other one would rescue
    job = work.enqueue(4.0, tag="long")
    samples: list[tuple[float, float]] = []

    def sample() -> bool:
        (row,) = query(h.db, "SELECT state, lease_until FROM jobs WHERE id = ?", [job.id])
        now = time.time()
        if row["state"] == "running":
            samples.append((now, row["lease_until"]))
        return row["state"] in TERMINAL

    wait_for(sample, 30, "the long job to finish", interval=0.05)
    for sup in sups:
        assert stop(sup) == 0
    assert integrity(h.db) == "ok"
    (row,) = query(h.db, "SELECT state, attempt, started_at, finished_at FROM jobs WHERE id = ?",
                   [job.id])
    assert (row["state"], row["attempt"]) == ("succeeded", 1)
    assert query(h.db, "SELECT * FROM attempts WHERE job_id = ?", [job.id]) == []
    expired = [(t, until) for t, until in samples if until <= t]
    assert not expired, f"the lease lapsed while the job ran: {expired}"
    renewals = len({until for _, until in samples})
    assert renewals >= 3 * 4.0 / lease * 0.5, f"only {renewals} lease values seen"
    assert max(until for _, until in samples) - row["started_at"] > 3 * lease
    result = audit(h.db, h.log, [job.id], killed={})
    result.check()
    assert result.runs == 1
    report(**result.figures(), producer_errors=0, lease_values_seen=renewals,
           note=f"lease={lease:g} s, job of 4 s, two supervisors on the file; the lease never "
                "lapsed in any sample; one run, one attempt")


# --- 5. poison tasks ---------------------------------------------------------------------------


def test_poison_tasks(h: Harness, report: Callable[..., None]) -> None:
    """Poison tasks (os._exit, SIGSEGV, unbounded memory) fail after crash_limit"""
    crash_limit = 3
    app = h.app()
    work = app.tasks["fault.work"]
    sup = h.start(workers=2, crash_limit=crash_limit, max_memory_per_child="200MB")
    normal = [work.enqueue(0.01, tag=i).id for i in range(60)]
    poisons = {
        "exit": app.tasks["fault.hard_exit"].enqueue(tag="exit").id,
        "segv": app.tasks["fault.segfault"].enqueue(tag="segv").id,
        "memory": app.tasks["fault.hog"].enqueue(step_mb=20, pause=0.05, tag="memory").id,
    }
    normal += [work.enqueue(0.01, tag=i).id for i in range(60, 150)]
    wait_terminal(h.db, normal + list(poisons.values()), 90, [sup])
    # The pool is refilled and serves on after every poison has failed.
    wait_for(lambda: len(sup.worker_pids()) == 2, 15, "the pool to be refilled to 2 workers",
             details=sup.output)
    after = [work.enqueue(0.0, tag=f"after{i}").id for i in range(20)]
    wait_terminal(h.db, after, 30, [sup])
    normal += after
    assert sup.running()
    assert stop(sup) == 0
    assert integrity(h.db) == "ok"

    reasons = {"exit": "exit code 3", "segv": "signal 11", "memory": "max_memory_per_child"}
    peaks: list[int] = []
    for kind, job_id in poisons.items():
        (row,) = query(h.db, "SELECT state, attempt, error FROM jobs WHERE id = ?", [job_id])
        assert row["state"] == "failed", (kind, dict(row))
        assert reasons[kind] in row["error"] and f"crash_limit={crash_limit}" in row["error"], \
            (kind, row["error"])
        attempts = query(h.db, "SELECT outcome, error FROM attempts WHERE job_id = ? "
                               "ORDER BY attempt", [job_id])
        assert [a["outcome"] for a in attempts] == ["failed"] * crash_limit, (kind, attempts)
        assert all(reasons[kind] in a["error"] for a in attempts), (kind, attempts)
        assert len(started(h.log, job_id)) == crash_limit
        if kind == "memory":
            peaks += [int(m) for a in attempts
                      for m in re.findall(r"with (\d+) MB", a["error"])]
    poison_audit = audit(h.db, h.log, list(poisons.values()), killed={}, expect="failed")
    assert not poison_audit.lost
    result = audit(h.db, h.log, normal, killed={})
    report(**result.figures(), producer_errors=0, poison_failed=3 - len(poison_audit.lost),
           note=f"crash_limit={crash_limit}: os._exit(3), SIGSEGV and a 20 MB/step memory "
                f"hog (max_memory_per_child=200MB, killed at {peaks} MB) each failed after "
                f"{crash_limit} attempts with the reason; the other jobs ran exactly once; "
                "the supervisor stayed up and the pool was refilled")
    result.check()
    assert result.runs == len(normal), "a healthy job ran twice"


# --- 6. SIGTERM drain ----------------------------------------------------------------------------


def test_sigterm_drain(h: Harness, report: Callable[..., None]) -> None:
    """SIGTERM drain: short jobs finish, long ones re-queued, exit 0; second SIGTERM stops"""
    app = h.app()
    work = app.tasks["fault.work"]
    state = {}

    def states(ids: Iterable[int]) -> list[str]:
        rows = {r["id"]: r["state"] for r in query(h.db, "SELECT id, state FROM jobs")}
        return [rows[i] for i in ids]

    # 1. first SIGTERM: a 2 s grace; the short jobs finish in it, the long ones are re-queued.
    sup = h.start(workers=4, grace=2.0)
    longs = [work.enqueue(0.05, first=60.0, tag=f"long{i}").id for i in range(2)]
    shorts = [work.enqueue(0.7, tag=f"short{i}").id for i in range(2)]
    wait_for(lambda: len(read_runs(h.log)) == 4, 15, "the four jobs to start",
             details=sup.output)
    pending = [work.enqueue(0.01, tag=f"pending{i}").id for i in range(6)]
    t0 = time.monotonic()
    sup.send(signal.SIGTERM)
    assert sup.wait(20) == 0
    state["drain_s"] = round(time.monotonic() - t0, 2)
    assert state["drain_s"] >= 1.5, "exited before the grace period ran out"
    assert states(shorts) == ["succeeded"] * 2
    assert states(longs) == ["queued"] * 2
    assert states(pending) == ["queued"] * 6
    for job_id in longs:
        rows = query(h.db, "SELECT outcome FROM attempts WHERE job_id = ?", [job_id])
        assert [r[0] for r in rows] == ["interrupted"]
    assert all(r[0] == 0 for r in query(
        h.db, f"SELECT attempt FROM jobs WHERE id IN ({','.join(map(str, pending))})")), \
        "a job was claimed while draining"

    # 2. a second SIGTERM stops at once, long jobs and all.
    sup2 = h.start(workers=4, grace=30)
    wait_for(lambda: states(longs + pending) == ["succeeded"] * 8, 20,
             "the re-queued jobs to finish", details=sup2.output)
    longs2 = [work.enqueue(0.05, first=60.0, tag=f"longer{i}").id for i in range(2)]
    wait_for(lambda: all(started(h.log, i) for i in longs2), 15, "the new long jobs to start")
    sup2.send(signal.SIGTERM)
    wait_for(lambda: "draining" in sup2.output(), 10, "the drain to begin",
             details=sup2.output)
    assert sup2.running()
    t0 = time.monotonic()
    sup2.send(signal.SIGTERM)
    assert sup2.wait(10) == 0
    state["second_signal_s"] = round(time.monotonic() - t0, 2)
    assert state["second_signal_s"] < 5, "a second SIGTERM did not stop at once"
    assert states(longs2) == ["queued"] * 2
    for job_id in longs2:
        (run,) = started(h.log, job_id)
        assert not alive(run.pid)

    # 3. after a restart everything finishes.
    sup3 = h.start(workers=2)
    every = longs + shorts + pending + longs2
    wait_terminal(h.db, every, 30, [sup3])
    assert stop(sup3) == 0
    assert integrity(h.db) == "ok"
    interrupted = {(r["job_id"], r["attempt"]) for r in query(
        h.db, "SELECT job_id, attempt FROM attempts WHERE outcome = 'interrupted'")}
    assert len(interrupted) == 4
    # The processes the supervisor ended (grace over, second signal) ran these attempts.
    killed = {r.pid: r.start for runs in read_runs(h.log).values() for r in runs
              if (r.id, r.attempt) in interrupted and r.end is None}
    assert len(killed) == 4
    result = audit(h.db, h.log, every, killed=killed)
    report(**result.figures(), producer_errors=0, interrupted=len(interrupted),
           killed_reruns=result.killed_reruns,
           note=f"grace 2 s: 2 short jobs finished, 2 long ones re-queued (exit 0 after "
                f"{state['drain_s']} s); a second SIGTERM stopped in "
                f"{state['second_signal_s']} s (exit 0); a restart finished all")
    result.check()


# --- 7. durability "full" ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.sqlite_only("durability = \"full\" is SQLite's synchronous=FULL: a commit on "
                         "the file survives a power cut")
def test_durability_full_under_sigkill(h: Harness, report: Callable[..., None],
                                       seed: int) -> None:
    """Durability "full": supervisor and producer SIGKILLed at random moments"""
    rounds = repetitions(full=200, ci=25)
    rng = random.Random(seed)
    printed: list[int] = []
    errors: list[str] = []
    missing: list[int] = []
    killed: dict[int, float] = {}
    productive = 0
    t0 = time.monotonic()
    for _ in range(rounds):
        sup = h.start(workers=2, wait=False, durability="full", crash_limit=CRASH_LIMIT)
        proc, out = h.producer("--durability", "full", "--mix", "--quick",
                               "--seed", str(rng.randrange(2**32)))
        time.sleep(rng.uniform(0.3, 0.8))  # the random kill moment
        h.kill_group(proc.pid)
        at, members = h.kill_group(sup.pid)
        for pid in members:
            killed[pid] = at
        proc.wait(10)
        sup.proc.wait(10)
        ids, errs = h.printed(out)
        errors += errs
        productive += bool(ids)
        if ids:
            present = {r[0] for r in query(
                h.db, f"SELECT id FROM jobs WHERE id IN ({','.join(map(str, set(ids)))})")}
            missing += [i for i in ids if i not in present]
        printed += ids
    elapsed = time.monotonic() - t0
    assert not missing, f"enqueues that had returned are gone: {missing[:20]}"
    assert productive >= rounds // 2, f"only {productive} of {rounds} rounds enqueued anything"
    # Every job in the file (printed or committed just before a kill) then runs to the end.
    final = h.start(workers=2, crash_limit=CRASH_LIMIT)
    every = [r[0] for r in query(h.db, "SELECT id FROM jobs")]
    wait_terminal(h.db, every, 180, [final])
    assert stop(final) == 0
    assert integrity(h.db) == "ok"
    result = audit(h.db, h.log, every, killed={}, groups=killed)
    report(**result.figures(), producer_errors=len(errors), rounds=rounds,
           printed_ids=len(set(printed)), missing_after_kill=len(missing), seed=seed,
           note=f"{rounds} rounds of ~0.3-0.8 s (supervisor + producer of mixed traffic: "
                f"plain, delayed, batches, keys), both process groups SIGKILLed, in "
                f"{elapsed:.0f} s; every printed id was in the file after each kill; "
                f"{'full count (local)' if rounds == 200 else 'reduced count (CI)'}")
    result.check()
    assert not errors, errors[:5]

