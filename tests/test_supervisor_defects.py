"""Defects an outside review found in the supervisor and its workers, each proven against a
real `litejobs run`: hostile stored rows, huge results, forking tasks, a worker that breaks
the protocol, cancelling a job sent ahead, cron's owed instants and unbounded passes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

import litejobs
from litejobs import State
from litejobs.cron import entry_from_spec
from litejobs.services.pruner import BATCH, BATCHES, Pruner
from litejobs.store import Store
from litejobs.ticker import Ticker
from tests.conftest import REPO, clean_env, wait_for


def write_outside(db: Path, job_id: int, **columns: object) -> None:
    """Change a job's row the way another program would (not through litejobs)."""
    conn = apsw.Connection(str(db))
    try:
        conn.setbusytimeout(10_000)
        sets = ", ".join(f"{k} = ?" for k in columns)
        conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*columns.values(), job_id))
    finally:
        conn.close()


def test_stored_rows_written_outside_litejobs_fail_only_their_own_job(
        start_supervisor, tasks, db_path, app):
    # Before: a newline in a stored args column split the line protocol (a task ran for a job
    # id that did not exist, the worker died, an innocent job was failed).
    newline = tasks.add.enqueue(1, 2)
    broken = tasks.add.enqueue(1, 2)
    typed = tasks.add.enqueue(1, 2)
    write_outside(db_path, newline.id, args="[\n40,\n2\n]")
    write_outside(db_path, broken.id, args="[1,\n")
    write_outside(db_path, typed.id, args=5)
    innocent = [tasks.add.enqueue(i, 1) for i in range(20)]
    sup = start_supervisor(workers=2)
    assert newline.result(timeout=20) == 42
    with pytest.raises(litejobs.JobFailed, match="not valid JSON"):
        broken.result(timeout=20)
    with pytest.raises(litejobs.JobFailed, match="JSON array"):
        typed.result(timeout=20)
    assert [j.result(timeout=20) for j in innocent] == [i + 1 for i in range(20)]
    assert sup.running()
    assert len(broken.attempts()) == 1  # failed at once, not retried into the same wall


def test_a_result_over_the_cap_fails_its_job_and_nothing_else(start_supervisor, tasks, app):
    sup = start_supervisor(workers=2)
    pids = wait_for(lambda: p if len(p := sup.worker_pids()) == 2 else None, 15, "2 workers")
    big = tasks.big.enqueue(app.max_payload + 10)
    fits = tasks.big.enqueue(500_000)
    with pytest.raises(litejobs.JobFailed, match="over the cap"):
        big.result(timeout=30)
    assert len(fits.result(timeout=30)) == 500_000
    assert tasks.add.enqueue(2, 2).result(timeout=20) == 4
    assert sup.worker_pids() == pids  # no worker was lost over it


def test_a_forked_child_returning_from_a_task_is_ended(start_supervisor, tasks, joblog):
    # Before: the child went on as a second worker on the same pipes; their interleaved
    # messages crashed the supervisor.
    sup = start_supervisor(workers=1)
    job = tasks.fork_return.enqueue(str(joblog))
    assert job.result(timeout=20) == "parent"
    forks = [r for r in joblog.records() if r["event"] == "fork"]
    assert sorted(r["child"] for r in forks) == [False, True]
    assert [tasks.add.enqueue(i, i).result(timeout=20) for i in range(10)] == [
        2 * i for i in range(10)]
    assert sup.running()
    (child,) = [r["pid"] for r in forks if r["child"]]
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or
             open(f"/proc/{child}/stat").read().split()[2] == "Z", 10, "the child to exit")


def test_a_worker_that_breaks_the_protocol_is_stopped_and_the_supervisor_goes_on(
        start_supervisor, tasks):
    # Before: a malformed message from a worker raised in the supervisor's loop and ended it.
    sup = start_supervisor(workers=2)
    bad = tasks.garble.enqueue()
    with pytest.raises(litejobs.JobFailed, match="unreadable message"):
        bad.result(timeout=30)
    assert [tasks.add.enqueue(i, 1).result(timeout=20) for i in range(10)] == list(range(1, 11))
    assert sup.running()
    assert "broke the protocol" in sup.output()


def test_cancelling_a_job_sent_ahead_leaves_the_running_one_alone(
        start_supervisor, tasks, joblog, app):
    # One worker of quick jobs is sent several at once. Before: cancelling one of those sent
    # ahead killed the worker, so the job it was running was interrupted and ran again.
    sup = start_supervisor(workers=1)
    warm = app.enqueue_many([tasks.logged.prepare(str(joblog), tag="warm") for _ in range(40)])
    wait_for(lambda: len(joblog.ends()) == len(warm), 20, "the warm-up jobs to end")
    long = tasks.logged.prepare(str(joblog), 2.0, tag="long")
    behind = [tasks.logged.options(priority=-1).prepare(str(joblog), tag=i) for i in range(6)]
    jobs = app.enqueue_many([long, *behind])
    wait_for(lambda: joblog.starts(jobs[0].id), 10, "the long job to start")
    victim = jobs[3]
    assert victim.refresh().state is State.RUNNING, "not sent ahead: the test proves nothing"
    assert victim.cancel()
    assert jobs[0].result(timeout=20) == sup.worker_pids().pop()
    assert [(a.attempt, a.outcome) for a in jobs[0].attempts()] == [(1, "succeeded")]
    assert joblog.starts(victim.id) == []
    assert victim.refresh().state is State.CANCELLED
    for j in jobs[1:]:
        if j is not victim:
            assert j.result(timeout=20)
            assert [(a.attempt, a.outcome) for a in j.attempts()] == [(1, "succeeded")]


QUEUE_CRON = '''
import json, os, time
import litejobs
app = litejobs.App(os.environ["LITEJOBS_TEST_DB"])

@app.cron("* * * * * */2", name="slow", overlap="queue")
def slow() -> None:
    start = time.time()
    time.sleep(3)
    with open(os.environ["LITEJOBS_TEST_LOG"], "a") as f:
        f.write(json.dumps({"start": start, "end": time.time()}) + "\\n")
'''


def test_overlap_queue_fires_the_owed_instant_when_the_previous_job_ends(tmp_path, db_path):
    # Every 2 s, each job takes 3 s: the instant that comes while one runs is owed. Before, it
    # fired only at the next scheduled instant (1 s after the job ended); now as it ends.
    (tmp_path / "queuecron.py").write_text(QUEUE_CRON)
    log = tmp_path / "fires.log"
    env = clean_env(db_path, LITEJOBS_TEST_LOG=str(log),
                    PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    proc = subprocess.Popen([sys.executable, "-m", "litejobs", "run", "--app", "queuecron:app",
                             "--workers", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def runs() -> list[dict[str, float]]:
            lines = log.read_text().splitlines() if log.exists() else []
            return [json.loads(line) for line in lines]

        wait_for(lambda: len(runs()) >= 3, 30, "three fires of the slow entry")
        done = runs()
        for before, after in itertools.pairwise(done):
            assert after["start"] - before["end"] < 0.6, done  # not ~1 s later
            assert after["start"] >= before["end"] - 0.05, done  # never two at once
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_month_down_costs_a_per_second_entry_one_bounded_pass(tmp_path):
    # Before: the ticker walked every second since the last handled instant (2.6 M for a
    # month) under the write lock, ~45 s; now only the instants within catchup.
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task(name="tick")
    def tick() -> None: ...

    entry = entry_from_spec("every_second", "* * * * * *", "tick", "UTC", (), {},
                            {"misfire": "all", "catchup": 600}, "test")
    ticker = Ticker(app, app.store, [entry])
    t0 = 1_780_000_000.0
    ticker.run_once(t0)  # the entry starts here
    start = time.monotonic()
    result = ticker.run_once(t0 + 30 * 86400)
    took = time.monotonic() - start
    assert result.fired == 601, result  # every second from now - 600 to now, both included
    assert took < 20, f"{took:.1f} s"  # a correctness bound, not a speed target
    assert app.stats()["states"]["queued"] == result.fired


def test_the_pruner_deletes_a_bounded_batch_a_pass_and_comes_back_soon(tmp_path):
    store = Store(tmp_path / "jobs.db")
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task(name="t")
    def t() -> None: ...

    total = BATCH * BATCHES + 700
    jobs = app.enqueue_many([t.prepare() for _ in range(total)])
    for j in jobs:
        j.cancel()
    pruner = Pruner(store, retention=60)
    now = time.time() + 3600
    first = pruner.run_once(now)
    assert first == BATCH * BATCHES and pruner.more  # stopped at its bound
    assert pruner.after(first) < 1.0
    second = pruner.run_once(now)
    assert second == 700 and not pruner.more
    assert pruner.after(second) == pruner.interval
    assert set(app.stats()["states"].values()) == {0}


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_supervisor_whose_file_is_deleted_or_replaced_stops_serving_it(
        start_supervisor, tasks, db_path, tmp_path, how):
    # Before: it went on serving the orphaned file while new enqueues went to a new one at the
    # path, where nothing ever ran them.
    sup = start_supervisor(workers=1)
    assert tasks.add.enqueue(1, 1).result(timeout=20) == 2
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            os.unlink(f"{db_path}{suffix}")
    else:
        other = tmp_path / "other.db"
        litejobs.App(other).store.connection()
        os.rename(other, db_path)
    assert sup.wait(30) == 1
    assert f"{db_path} was {how}" in sup.output(), sup.output()
    assert "Stopping" in sup.output()


def test_a_worker_that_cannot_be_started_is_retried_without_stopping_the_supervisor(
        tmp_path, db_path, app, tasks):
    # The supervisor runs from an interpreter link we then remove, so starting a replacement
    # worker fails (as with too many open files, or no memory for a process). Before: the
    # error ended the supervisor; now it logs, retries each second, and refills the pool.
    import site

    link = tmp_path / "python"
    link.symlink_to(os.path.realpath(sys.executable))
    env = clean_env(db_path, PYTHONPATH=os.pathsep.join([str(REPO), *site.getsitepackages()]))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(link), "-m", "litejobs", "run", "--app",
                                 "tests.apps.basic:app", "--workers", "1"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert tasks.add.enqueue(1, 2).result(timeout=30) == 3
        (worker,) = wait_for(lambda: c if len(c := _children(proc.pid)) == 1 else None, 10,
                             "one worker")
        link.unlink()
        os.kill(worker, 9)
        wait_for(lambda: "cannot start a worker" in log.read_text(), 15,
                 "the failed start to be logged", details=log.read_text)
        job = tasks.add.enqueue(2, 3)
        assert proc.poll() is None, log.read_text()
        link.symlink_to(os.path.realpath(sys.executable))
        assert job.result(timeout=30) == 5
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(10)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_job_that_never_reached_its_worker_is_not_charged_as_a_crash(
        start_supervisor, tasks):
    # The worker stops reading its pipe after this job (it stays alive): the supervisor's next
    # send to it fails. Before: the job it could not send was charged as a crash of its worker
    # (a failed WorkerDied attempt, counted against retries and crash_limit).
    sup = start_supervisor(workers=1)
    tasks.deaf.enqueue().result(timeout=20)
    job = tasks.add.enqueue(20, 22)
    assert job.result(timeout=30) == 42
    assert [(a.attempt, a.outcome) for a in job.attempts()] == [(1, "succeeded")]
    assert sup.running()


def test_text_that_is_not_utf8_fails_its_own_job_only(start_supervisor, tasks, db_path):
    # Before: reading the claimed row raised UnicodeDecodeError inside the claim, which
    # stopped the supervisor (and with it every other job).
    broken = tasks.add.enqueue(1, 2)
    conn = apsw.Connection(str(db_path))
    conn.execute("UPDATE jobs SET args = CAST(x'5bff5d' AS TEXT) WHERE id = ?", (broken.id,))
    conn.close()
    others = [tasks.add.enqueue(i, 1) for i in range(10)]
    sup = start_supervisor(workers=2)
    assert [j.result(timeout=20) for j in others] == list(range(1, 11))

    def ended() -> tuple[str, str] | None:
        # read without the args column: this client cannot decode it either
        conn = apsw.Connection(str(db_path))
        try:
            (state, error), = conn.execute("SELECT state, error FROM jobs WHERE id = ?",
                                           (broken.id,))
        finally:
            conn.close()
        return (state, error) if state == "failed" else None

    _, error = wait_for(ended, 20, "the job with bytes that are not UTF-8 to fail")
    assert "not valid JSON" in error
    assert sup.running()
