"""litejobs.testing: jobs run inline, with a controllable clock."""

from __future__ import annotations

from pathlib import Path

import pytest

import litejobs
from litejobs.testing import Clock, run_until_idle


def make(tmp_path: Path) -> tuple[litejobs.App, dict[str, litejobs.Task]]:  # type: ignore[type-arg]
    app = litejobs.App(tmp_path / "t.db")
    calls: list[int] = []

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="t.flaky", retries=2,
              backoff=litejobs.Backoff(base=10, factor=1, jitter=False))
    def flaky() -> int:
        calls.append(1)
        if litejobs.current_job().attempt < 3:
            raise ConnectionError("try later")
        return len(calls)

    return app, {"add": add, "flaky": flaky}


def test_runs_due_jobs_inline_and_records_results(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    jobs = [t["add"].enqueue(i, i) for i in range(3)]
    report = run_until_idle(app)
    assert (report.succeeded, report.failed) == (3, 0)
    assert [j.result(timeout=0) for j in jobs] == [0, 2, 4]
    assert jobs[0].attempts()[0].outcome == "succeeded"


def test_clock_controls_delays_and_backoff(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    clock = Clock()
    delayed = t["add"].options(delay=60).enqueue(1, 1)
    flaky = t["flaky"].enqueue()
    first = run_until_idle(app, clock=clock)
    assert (first.succeeded, first.failed, first.retried) == (0, 1, 1)
    assert delayed.refresh().state is litejobs.State.SCHEDULED
    clock.advance(10)
    assert run_until_idle(app, clock=clock).retried == 1  # second attempt fails too
    clock.advance(51)  # the delay counted from the real time of enqueue, a moment after Clock()
    last = run_until_idle(app, clock=clock)
    assert last.succeeded == 2  # the third attempt and the delayed job
    assert flaky.result(timeout=0) == 3
    assert delayed.result(timeout=0) == 2


def test_clock_only_moves_forward() -> None:
    clock = Clock(100.0)
    assert clock.advance(5) == 105.0 == clock()
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
