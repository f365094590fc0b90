"""asyncio (issue 15, item 2): ``async def`` tasks run by a real `litejobs run` on one event
loop per worker, their timeout cancels the coroutine (and the supervisor's hard timeout ends
one that will not stop), and async producers (``aenqueue``, ``aresult``, ``aget_job``) wait
without blocking the caller's event loop."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs.errors import JobFailed
from tests.apps import asyncapp
from tests.conftest import (
    REPO,
    JobLog,
    SupervisorProcess,
    alive,
    launch_supervisor,
    wait_for,
)

SPEC = "tests.apps.asyncapp:app"


@pytest.fixture
def db_path(database: str) -> Path | str:
    """Every test here runs on both stores: the app, `litejobs run` and the CLI all get it."""
    return database if "://" in database else Path(database)


@pytest.fixture
def aapp(db_path: Path) -> litejobs.App:
    return asyncapp.make_app(db_path)


@pytest.fixture
def run_async(tmp_path: Path, db_path: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Factory: `litejobs run` on the asyncio test app with ``workers`` workers."""
    started: list[SupervisorProcess] = []

    def start(workers: int = 1) -> SupervisorProcess:
        cfg = tmp_path / "litejobs.toml"
        cfg.write_text(f'app = "{SPEC}"\n')
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", SPEC, "--workers",
               str(workers), "--config", str(cfg)]
        sup = launch_supervisor(cmd, REPO, db_path, tmp_path / f"supervisor-{len(started)}.log")
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill_group()


def test_async_task_returns_its_result_on_one_loop_per_worker(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    run_async(workers=1)
    assert aapp.tasks["aio.add"].enqueue(2, 3).result(timeout=30) == 5
    seen = [aapp.tasks["aio.whoami"].enqueue() for _ in range(3)]
    results = [job.result(timeout=30) for job in seen]
    assert [r["id"] for r in results] == [job.id for job in seen]  # current_job() inside
    assert all(r["attempt"] == 1 for r in results)
    # the same worker ran them all, on the loop it made once
    assert len({r["pid"] for r in results}) == 1
    assert len({r["loop"] for r in results}) == 1


def test_sync_and_async_tasks_share_a_queue(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    run_async(workers=2)
    jobs = [(aapp.tasks["aio.add" if i % 2 else "aio.sync_add"].enqueue(i, i), 2 * i)
            for i in range(40)]
    assert {job.queue for job, _ in jobs} == {"default"}
    assert [job.result(timeout=30) for job, _ in jobs] == [want for _, want in jobs]


def test_async_task_that_raises_is_retried_like_a_sync_one(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    run_async(workers=1)
    job = aapp.tasks["aio.flaky"].enqueue(str(joblog))
    assert job.result(timeout=30) == "ok on 3"
    attempts = job.attempts()
    assert [a.outcome for a in attempts] == ["failed", "failed", "succeeded"]
    assert attempts[0].error == "ConnectionError: flaky attempt 1"
    assert attempts[0].traceback is not None and "in flaky" in attempts[0].traceback
    assert [r["attempt"] for r in joblog.starts(job.id)] == [1, 2, 3]


def test_async_task_reports_progress_and_metadata(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    run_async(workers=1)
    job = aapp.tasks["aio.progress"].enqueue(5)
    assert job.result(timeout=30) == 5
    job.refresh()
    assert job.progress == (1.0, "step 5 of 5")
    assert job.metadata == {"done": 5}


def test_async_task_returning_then_runs_its_children_and_continuation(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    run_async(workers=2)
    assert aapp.tasks["aio.then_add"].enqueue(1, 2).result(timeout=30) == 6


def test_a_tasks_own_timeout_error_is_a_plain_failure(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    run_async(workers=1)
    job = aapp.tasks["aio.own_timeout"].enqueue()
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=30)
    assert "TimeoutError: the task's own timeout" in str(failed.value)
    assert "JobTimeout" not in str(failed.value)


def test_timeout_cancels_the_coroutine_and_the_worker_lives_on(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    sup = run_async(workers=1)
    before = aapp.tasks["aio.whoami"].enqueue().result(timeout=30)
    started = time.monotonic()
    job = aapp.tasks["aio.sleeper"].enqueue(60)  # timeout=1.0
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=30)
    took = time.monotonic() - started
    assert "JobTimeout: attempt 1 ran past its timeout of 1 s and was cancelled" in str(
        failed.value)
    assert took < 20, took  # nowhere near the 60 s sleep
    after = aapp.tasks["aio.whoami"].enqueue().result(timeout=30)
    assert after["pid"] == before["pid"], "the worker was ended, not the coroutine cancelled"
    assert after["loop"] == before["loop"]
    assert "timed out" in sup.output()


def test_a_coroutine_that_swallows_cancellation_is_ended_by_the_hard_timeout(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    run_async(workers=1)
    job = aapp.tasks["aio.stubborn"].enqueue(str(joblog))
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=30)
    assert "JobTimeout: attempt 1 ran past its timeout of 1 s and its worker was stopped" in str(
        failed.value)
    records = joblog.records()
    pid = records[0]["pid"]
    assert any(r["event"] == "cancelled" for r in records), records  # it was asked first
    wait_for(lambda: not alive(pid), 10, "the stubborn job's worker to end")
    after = aapp.tasks["aio.whoami"].enqueue().result(timeout=30)
    assert after["pid"] != pid  # a new worker runs the next job


def test_a_coroutine_that_blocks_its_loop_is_ended_by_the_hard_timeout(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess], joblog: JobLog) -> None:
    run_async(workers=1)
    job = aapp.tasks["aio.blocker"].enqueue(str(joblog))
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=30)
    assert "JobTimeout: attempt 1 ran past its timeout of 1 s and its worker was stopped" in str(
        failed.value)
    pid = joblog.starts()[0]["pid"]
    wait_for(lambda: not alive(pid), 10, "the blocked job's worker to end")
    assert aapp.tasks["aio.add"].enqueue(1, 1).result(timeout=30) == 2


def test_run_until_idle_runs_async_tasks(aapp: litejobs.App, joblog: JobLog) -> None:
    """litejobs.testing runs jobs through the worker's run_job, so async tasks too."""
    from litejobs.testing import run_until_idle

    add = aapp.tasks["aio.add"].enqueue(4, 5)
    flaky = aapp.tasks["aio.flaky"].enqueue(str(joblog))
    progress = aapp.tasks["aio.progress"].enqueue(3)
    sleeper = aapp.tasks["aio.sleeper"].enqueue(30)  # cancelled at its 1 s timeout
    deadline = time.monotonic() + 30
    while not all(j.refresh().state.value in ("succeeded", "failed")
                  for j in (add, flaky, progress, sleeper)):
        assert time.monotonic() < deadline, "jobs still not done"
        run_until_idle(aapp)
    assert add.result(timeout=0) == 9
    assert flaky.result(timeout=0) == "ok on 3"
    assert progress.result(timeout=0) == 3 and progress.refresh().progress == (1.0, "step 3 of 3")
    with pytest.raises(JobFailed, match="JobTimeout: attempt 1 ran past its timeout of 1 s and "
                                        "was cancelled"):
        sleeper.result(timeout=0)


def test_run_until_idle_runs_async_tasks_when_called_from_async_code(
        aapp: litejobs.App) -> None:
    """An async test calls run_until_idle inside its own running loop: the coroutine gets a
    loop of its own instead of failing with 'another loop is running'."""
    from litejobs.testing import run_until_idle

    async def main() -> None:
        job = await aapp.tasks["aio.whoami"].aenqueue()
        run_until_idle(aapp)
        seen = await job.aresult(timeout=0)
        assert seen["id"] == job.id and seen["attempt"] == 1
        assert seen["loop"] != id(asyncio.get_running_loop())

    asyncio.run(main())


# --- async producers ------------------------------------------------------------------------


class Ticker:
    """A coroutine that counts 2 ms ticks: it stops counting while the loop is blocked."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.002)
            self.ticks += 1


async def _during(ticker: Ticker, awaitable: Any) -> tuple[Any, int, float]:
    before, t0 = ticker.ticks, time.monotonic()
    value = await awaitable
    return value, ticker.ticks - before, time.monotonic() - t0


def test_aenqueue_aresult_and_aget_job_do_not_block_the_loop(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    run_async(workers=1)

    async def main() -> None:
        ticker = Ticker()
        ticking = asyncio.create_task(ticker.run())
        job = await aapp.tasks["aio.sleeper"].aenqueue(0.5)
        bound = aapp.tasks["aio.add"].options(priority=5, tags=["async"])
        other = await bound.aenqueue(1, 2)
        result, ticks, took = await _during(ticker, job.aresult(timeout=30))
        assert result == 0.5 and took >= 0.4
        # the loop kept running while aresult waited: a blocked loop would tick about once
        assert ticks >= 20, (ticks, took)
        assert await other.aresult(timeout=30) == 3
        found = await aapp.aget_job(other.id)
        assert found is not None and found.id == other.id and found.priority == 5
        assert found.tags == ["async"]
        assert await aapp.aget_job(10**12) is None
        ticking.cancel()

    asyncio.run(main())


def test_aresult_times_out_without_blocking_the_loop(aapp: litejobs.App) -> None:
    """No supervisor: the job stays queued and aresult's timeout runs out."""

    async def main() -> None:
        ticker = Ticker()
        ticking = asyncio.create_task(ticker.run())
        job = await aapp.tasks["aio.add"].aenqueue(1, 1)
        with pytest.raises(TimeoutError, match=r"still queued after 0.5 s"):
            await job.aresult(timeout=0.5)
        assert ticker.ticks >= 20, ticker.ticks
        ticking.cancel()

    asyncio.run(main())


def test_aresult_raises_jobfailed_like_result(
        aapp: litejobs.App, run_async: Callable[..., SupervisorProcess]) -> None:
    run_async(workers=1)

    async def main() -> None:
        job = await aapp.tasks["aio.own_timeout"].aenqueue()
        with pytest.raises(JobFailed, match="the task's own timeout"):
            await job.aresult(timeout=30)

    asyncio.run(main())
