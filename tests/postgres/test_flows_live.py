"""Workflows and tokens under a real ``litejobs run`` on PostgreSQL: a
chord whose fan-in gets every result in order, a continuation (``litejobs.then``), a step
waiting on a token completed from this process, a failed step's downstream cancelled and
revived by a retry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import litejobs
from tests.apps import wfapp
from tests.conftest import REPO, JobLog, SupervisorProcess, launch_supervisor, wait_for


@pytest.fixture
def live(tmp_path: Path, pg_url: str) -> Iterator[tuple[litejobs.App, SupervisorProcess, Path]]:
    app = wfapp.make_app(pg_url)
    app.stats()  # the schema exists before the supervisor starts
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", "tests.apps.wfapp:app",
           "--workers", "3", "--database", pg_url]
    sup = launch_supervisor(cmd, REPO, pg_url, tmp_path / "run.log")  # type: ignore[arg-type]
    try:
        yield app, sup, tmp_path / "wf.log"
    finally:
        sup.kill_group()


def test_chord_then_and_token_under_a_supervisor(live: Any) -> None:
    app, sup, log = live
    t = {name.split(".", 1)[1]: task for name, task in app.tasks.items()}
    path = str(log)
    calls = [t["step"].prepare(path, {"i": i}, 0.002 * ((7 * i) % 5)) for i in range(8)]
    run = litejobs.chord(calls, then=t["fan_in"].prepare(path)).enqueue()
    assert run.result(timeout=60) == [{"i": i} for i in range(8)], sup.output()[-3000:]
    split = t["split"].enqueue(path, 3)
    assert split.result(timeout=60) == [0, 1, 2]
    token = app.create_token(timeout=60)
    flow = app.workflow("after-token")
    flow.add(t["fan_in"].prepare(path), after=[token])
    after = flow.enqueue()
    (waiting,) = [j for j in after.jobs() if j.task == "wf.fan_in"]  # (and the token)
    assert waiting.state == "waiting"
    app.complete_token(token, {"go": True})
    assert after.result(timeout=60) == [{"go": True}]
    starts = [r for r in JobLog(log).records() if r["event"] == "start"
              and r.get("results") == [{"go": True}]]
    assert len(starts) == 1


def test_failed_step_cancels_downstream_and_a_retry_revives_it(live: Any) -> None:
    app, sup, log = live
    t = {name.split(".", 1)[1]: task for name, task in app.tasks.items()}
    path = str(log)
    go = log.parent / "go"
    run = litejobs.chain(t["gate"].options(retries=0).prepare(path, str(go), "first", 0.3),
                         t["fan_in"].prepare(path)).enqueue()
    wait_for(lambda: run.state == "failed", 30, "the gate to time out and fail its run",
             details=lambda: sup.output()[-3000:])
    first, second = run.jobs()
    assert first.state == "failed" and second.state == "cancelled"
    go.write_text("")
    first.retry()
    assert run.result(timeout=60) == ["first"]
