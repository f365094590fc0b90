"""async_concurrency (issue 15, item 2): a worker runs several ``async def`` jobs at once on
its event loop, never more than ``async_concurrency``; a sync job beside them runs alone; each
coroutine has its own timeout, cancel, progress and ``current_job()``; a worker that dies or
is stopped while running several coroutines loses none of them."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs import protocol
from litejobs.config import read_file
from litejobs.errors import ConfigError, JobFailed
from tests.apps import aioconc
from tests.conftest import REPO, JobLog, SupervisorProcess, launch_supervisor, wait_for

SPEC = "tests.apps.aioconc:app"


@pytest.fixture
def db_path(database: str) -> Path | str:
    """Every test here runs on both stores: the app, `litejobs run` and the CLI all get it."""
    return database if "://" in database else Path(database)


@pytest.fixture
def capp(db_path: Path) -> litejobs.App:
    return aioconc.make_app(db_path)


@pytest.fixture
def run_conc(tmp_path: Path, db_path: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Factory: `litejobs run` on the test app with ``workers`` and ``async_concurrency``."""
    started: list[SupervisorProcess] = []

    def start(workers: int = 1, concurrency: int = 16, **more: int) -> SupervisorProcess:
        cfg = tmp_path / "litejobs.toml"
        cfg.write_text(f'app = "{SPEC}"\nasync_concurrency = {concurrency}\n'
                       + "".join(f"{k} = {v}\n" for k, v in more.items()))
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", SPEC, "--workers",
               str(workers), "--config", str(cfg)]
        sup = launch_supervisor(cmd, REPO, db_path, tmp_path / f"supervisor-{len(started)}.log")
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill_group()


def at_once(records: list[dict[str, Any]]) -> dict[int, int]:
    """The most jobs that ran at once in each worker (pid), from the log's starts and ends
    in the order they were written."""
    now: dict[int, int] = {}
    most: dict[int, int] = {}
    for r in records:
        if r["event"] == "start":
            now[r["pid"]] = now.get(r["pid"], 0) + 1
            most[r["pid"]] = max(most.get(r["pid"], 0), now[r["pid"]])
        elif r["event"] == "end":
            now[r["pid"]] -= 1
    return most


def test_coroutines_run_at_once_per_worker_and_never_past_the_cap(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    run_conc(workers=2, concurrency=4)
    gate = capp.tasks["conc.gate"]
    # each waits until 8 have started: only 2 workers x 4 at once let any of them end early
    jobs = capp.enqueue_many([gate.prepare(str(joblog), 8, 0.05) for _ in range(50)])
    assert [job.result(timeout=60) for job in jobs] == [job.id for job in jobs]
    records = joblog.records()
    most = at_once(records)
    assert len(most) == 2, most
    assert max(most.values()) == 4, most  # several at once, and never past the cap
    first_ends = min(r["t"] for r in records if r["event"] == "end")
    assert first_ends - records[0]["t"] < 20, "the gate of 8 starts was never reached"


def test_a_sync_job_waits_for_the_coroutines_and_runs_alone(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    run_conc(workers=1, concurrency=8)
    nap, blocking = capp.tasks["conc.nap"], capp.tasks["conc.blocking"]
    calls = []
    for i in range(30):  # one queue: coroutines with a sync job every fifth
        calls.append(blocking.prepare(str(joblog), 0.05) if i % 5 == 4
                     else nap.prepare(str(joblog), 0.3))
    jobs = capp.enqueue_many(calls)
    assert {job.queue for job in jobs} == {"default"}
    assert [job.result(timeout=60) for job in jobs] == [job.id for job in jobs]
    records = joblog.records()
    coroutines: set[int] = set()
    sync: int | None = None
    for r in records:  # one worker: nothing else runs while a sync job runs
        if r["event"] == "start":
            assert sync is None, (r, sync)
            if r.get("sync"):
                assert not coroutines, (r, coroutines)
                sync = r["id"]
            else:
                coroutines.add(r["id"])
        elif r.get("sync"):
            sync = None
        else:
            coroutines.discard(r["id"])
    assert at_once(records)[records[0]["pid"]] > 1


def test_a_coroutine_past_its_timeout_is_cancelled_and_its_neighbours_finish(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    run_conc(workers=1)
    nap = capp.tasks["conc.nap"]
    # a per-call timeout: the job frame carries it, so the worker cancels the coroutine
    late = nap.options(timeout=3.0, retries=0).enqueue(str(joblog), 60)
    neighbours = [nap.enqueue(str(joblog), 4.0) for _ in range(5)]
    with pytest.raises(JobFailed) as failed:
        late.result(timeout=30)
    assert ("JobTimeout: attempt 1 ran past its timeout of 3 s and was cancelled"
            in str(failed.value))
    assert [job.result(timeout=30) for job in neighbours] == [job.id for job in neighbours]
    assert all(len(job.attempts()) == 1 for job in neighbours)  # never disturbed
    assert len({r["pid"] for r in joblog.records()}) == 1  # one worker throughout
    assert joblog.records(), "nothing ran"
    assert [r["id"] for r in joblog.records() if r["event"] == "cancelled"] == [late.id]


def test_a_coroutine_that_ignores_cancellation_is_ended_and_its_neighbours_rerun(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    run_conc(workers=1)
    stubborn = capp.tasks["conc.stubborn"].enqueue(str(joblog))  # timeout=1.0
    neighbours = [capp.tasks["conc.nap"].enqueue(str(joblog), 2.0) for _ in range(5)]
    with pytest.raises(JobFailed) as failed:
        stubborn.result(timeout=30)
    assert "its worker was stopped" in str(failed.value)
    assert [job.result(timeout=60) for job in neighbours] == [job.id for job in neighbours]
    for job in neighbours:  # each was running when its worker was stopped: run again
        outcomes = [a.outcome for a in job.attempts()]
        assert outcomes[-1] == "succeeded" and "interrupted" in outcomes, outcomes
    assert len({r["pid"] for r in joblog.records()}) == 2  # a new worker took over


def test_cancelling_one_running_coroutine_leaves_the_others_running(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    sup = run_conc(workers=1)
    nap = capp.tasks["conc.nap"]
    jobs = [nap.enqueue(str(joblog), 5.0) for _ in range(5)]
    wait_for(lambda: len(joblog.starts()) == 5, 30, "5 coroutines running",
             details=sup.output)
    assert jobs[2].cancel()
    wait_for(lambda: any(r["event"] == "cancelled" for r in joblog.records()), 10,
             "the coroutine to be cancelled", details=sup.output)
    others = jobs[:2] + jobs[3:]
    assert [job.result(timeout=30) for job in others] == [job.id for job in others]
    assert all(len(job.attempts()) == 1 for job in others)
    assert jobs[2].refresh().state == "cancelled"
    assert len({r["pid"] for r in joblog.records()}) == 1  # the worker went on
    assert [r["id"] for r in joblog.records() if r["event"] == "cancelled"] == [jobs[2].id]


def test_cancelling_a_coroutine_sent_ahead_takes_it_back_unstarted(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    sup = run_conc(workers=1, concurrency=2)
    nap = capp.tasks["conc.nap"]
    running = [nap.enqueue(str(joblog), 3.0) for _ in range(2)]
    wait_for(lambda: len(joblog.starts()) == 2, 30, "2 coroutines running",
             details=sup.output)
    ahead = nap.enqueue(str(joblog), 3.0)  # claimed into the full worker's backlog
    wait_for(lambda: ahead.refresh().state == "running", 30, "the job to be sent ahead",
             details=sup.output)
    assert ahead.cancel()
    assert [job.result(timeout=30) for job in running] == [job.id for job in running]
    assert all(len(job.attempts()) == 1 for job in running)
    assert ahead.refresh().state == "cancelled"
    assert joblog.starts(ahead.id) == []  # never began
    assert len({r["pid"] for r in joblog.records()}) == 1


def test_a_cancelled_coroutine_that_will_not_stop_is_ended_with_its_worker(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    sup = run_conc(workers=1)
    deaf = capp.tasks["conc.deaf"].enqueue(str(joblog))  # no timeout
    neighbours = [capp.tasks["conc.nap"].enqueue(str(joblog), 8.0) for _ in range(3)]
    wait_for(lambda: len(joblog.starts()) == 4, 30, "4 coroutines running",
             details=sup.output)
    assert deaf.cancel()
    # CANCEL_GRACE (5 s) later its worker is stopped; its neighbours were running: run again
    assert [job.result(timeout=60) for job in neighbours] == [job.id for job in neighbours]
    for job in neighbours:
        assert [a.outcome for a in job.attempts()] == ["interrupted", "succeeded"]
    assert deaf.refresh().state == "cancelled"
    assert len({r["pid"] for r in joblog.records()}) == 2
    assert "did not stop when cancelled" in sup.output()


def test_max_tasks_per_child_holds_for_coroutines(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog,
        tmp_path: Path) -> None:
    run_conc(workers=1, concurrency=8, max_tasks_per_child=5)
    nap = capp.tasks["conc.nap"]
    jobs = capp.enqueue_many([nap.prepare(str(joblog), 0.5) for _ in range(23)])
    assert [job.result(timeout=60) for job in jobs] == [job.id for job in jobs]
    per_worker: dict[int, int] = {}
    for r in joblog.starts():
        per_worker[r["pid"]] = per_worker.get(r["pid"], 0) + 1
    assert sorted(per_worker.values()) == [3, 5, 5, 5, 5], per_worker
    assert max(at_once(joblog.records()).values()) == 5  # its 5 at once, no more


def test_drain_lets_running_coroutines_finish_and_puts_the_rest_back(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    sup = run_conc(workers=1, concurrency=4)
    nap = capp.tasks["conc.nap"]
    quick = [nap.enqueue(str(joblog), 1.0) for _ in range(4)]
    wait_for(lambda: len(joblog.starts()) == 4, 30, "4 coroutines running",
             details=sup.output)
    later = [nap.enqueue(str(joblog), 1.0) for _ in range(3)]
    sup.send(signal.SIGTERM)  # grace (30 s) is longer than what they have left
    assert sup.wait(30) == 0
    assert all(job.refresh().state == "succeeded" for job in quick)
    assert all(len(job.attempts()) == 1 for job in quick)
    assert all(job.refresh().state in ("queued", "succeeded") for job in later)
    assert len(joblog.starts()) == len(joblog.ends())  # none stopped halfway


def test_drain_past_its_grace_puts_every_running_coroutine_back(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    sup = run_conc(workers=1, concurrency=4, grace=1)
    jobs = [capp.tasks["conc.nap"].enqueue(str(joblog), 30.0) for _ in range(4)]
    wait_for(lambda: len(joblog.starts()) == 4, 30, "4 coroutines running",
             details=sup.output)
    sup.send(signal.SIGTERM)
    assert sup.wait(30) == 0
    for job in jobs:
        assert job.refresh().state == "queued"
        assert [a.outcome for a in job.attempts()] == ["interrupted"]


def test_a_worker_killed_while_running_coroutines_loses_none(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    sup = run_conc(workers=1)
    nap = capp.tasks["conc.nap"]  # retries=3
    jobs = [nap.enqueue(str(joblog), 5.0) for _ in range(5)]
    starts = wait_for(lambda: s if len(s := joblog.starts()) == 5 else None, 30,
                      "5 coroutines running", details=sup.output)
    (pid,) = {r["pid"] for r in starts}
    os.kill(pid, signal.SIGKILL)
    assert [job.result(timeout=60) for job in jobs] == [job.id for job in jobs]
    for job in jobs:
        assert [a.outcome for a in job.attempts()] == ["failed", "succeeded"]
        assert "WorkerDied" in (job.attempts()[0].error or "")
        assert [r["attempt"] for r in joblog.starts(job.id)] == [1, 2]


def test_random_worker_kills_lose_no_coroutine(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    sup = run_conc(workers=2, concurrency=8, crash_limit=100)
    nap = capp.tasks["conc.nap"].options(retries=100)
    jobs = capp.enqueue_many([nap.prepare(str(joblog), rng.uniform(0, 0.1))
                              for _ in range(600)])
    killed: set[int] = set()
    while len(killed) < 5 and capp.get_job(jobs[-1].id).state != "succeeded":
        time.sleep(rng.uniform(0.1, 0.3))  # the chaos's own pace, not a wait for a condition
        alive = [r["pid"] for r in joblog.starts() if r["pid"] not in killed]
        if alive:
            killed.add(alive[-1])  # the worker that began a job last
            with contextlib.suppress(ProcessLookupError):
                os.kill(alive[-1], signal.SIGKILL)
    assert [job.result(timeout=120) for job in jobs] == [job.id for job in jobs], sup.output()
    rerun = [job for job in jobs if len(job.attempts()) > 1]
    print(f"seed={seed} workers_killed={len(killed)} jobs_rerun={len(rerun)}")
    assert killed and rerun, (seed, killed)
    for job in rerun:  # each attempt before the last was caught running by a kill
        outcomes = [a.outcome for a in job.attempts()]
        assert outcomes[-1] == "succeeded" and set(outcomes[:-1]) <= {"failed"}, outcomes
        assert all("WorkerDied" in (a.error or "") for a in job.attempts()[:-1])


def test_each_coroutine_sees_its_own_job_progress_and_log_records(
        capp: litejobs.App, run_conc: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    sup = run_conc(workers=1, concurrency=10)
    gate = capp.tasks["conc.gate"]
    jobs = [gate.enqueue(str(joblog), 10, 0.3) for _ in range(10)]  # all 10 at once
    assert [job.result(timeout=60) for job in jobs] == [job.id for job in jobs]
    assert max(at_once(joblog.records()).values()) == 10
    for job in jobs:
        job.refresh()
        assert job.progress == (1.0, f"job {job.id}")
        assert job.metadata == {"me": job.id}
    lines = [f"job {job.id} (conc.gate, attempt 1) conc: gate of job {job.id}" for job in jobs]
    wait_for(lambda: all(line in sup.output() for line in lines), 10,
             "each coroutine's log record under its own job", details=sup.output)


def test_the_job_frame_carries_the_timeout_and_a_cancel_frame_its_jobs() -> None:
    row = {"id": 7, "task": "t", "attempt": 2, "queue": "default", "scheduled_at": 1.5e9,
           "max_attempts": 4, "interrupts": 1, "args": "[]", "kwargs": "{}"}
    for timeout, want in ((2.5, 2.5), (None, None), (30, 30.0)):
        (payload,) = protocol.Reader().feed(protocol.encode_job({**row, "timeout": timeout}))
        msg = protocol.decode_job(payload)
        assert isinstance(msg, protocol.JobMessage) and msg.timeout == want
    (payload,) = protocol.Reader().feed(protocol.cancel([(7, 2), (8, 1)]))
    assert protocol.decode_job(payload) == protocol.Cancel([(7, 2), (8, 1)])
    (payload,) = protocol.Reader().feed(protocol.revoke([(7, 2)]))
    assert protocol.decode_job(payload) == [(7, 2)]


@pytest.mark.parametrize("value", ["0", "-3", '"many"', "2.5", "true"])
def test_a_bad_async_concurrency_is_one_clear_error(tmp_path: Path, value: str) -> None:
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f"async_concurrency = {value}\n")
    with pytest.raises(ConfigError) as error:
        read_file(str(cfg))
    text = str(error.value)
    assert "async_concurrency" in text and "from 1 to" in text and "\n" not in text


def test_async_concurrency_defaults_to_16(tmp_path: Path) -> None:
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text("workers = 1\n")
    assert read_file(str(cfg)).async_concurrency == 16
    cfg.write_text("async_concurrency = 3\n")
    assert read_file(str(cfg)).async_concurrency == 3
