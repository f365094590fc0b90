"""Reopening a workflow run by its id (``app.get_workflow``), as a web page does that stored
``run.id`` and later shows its state, and what a run's cancel means for a later retry."""

from __future__ import annotations

from pathlib import Path

import litejobs
from litejobs.testing import run_until_idle


def _app(tmp_path: Path) -> tuple[litejobs.App, litejobs.Task[[int], int]]:
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task(retries=0)
    def double(x: int) -> int:
        return 2 * x

    return app, double


def test_get_workflow_reopens_a_run_by_id(tmp_path: Path) -> None:
    app, double = _app(tmp_path)
    run = app.workflow("reopen").add(double.prepare(21)).flow.enqueue()
    again = litejobs.App(tmp_path / "jobs.db").get_workflow(run.id)  # another process
    assert again is not None and again.id == run.id and again.name == "reopen"
    assert again.state == "running"
    run_until_idle(app)
    assert again.state == "succeeded" and again.result(0) == 42
    assert app.get_workflow(run.id + 1) is None
    assert app.get_workflow(0) is None and app.get_workflow(2**63) is None


def test_a_retried_step_resumes_a_cancelled_run(tmp_path: Path) -> None:
    app, double = _app(tmp_path)
    flow = litejobs.chain(double.prepare(1), double.prepare(2), double.prepare(3))
    run = flow.enqueue()
    assert run.cancel() == 3
    assert run.state == "cancelled"
    first = flow.steps[0].id
    assert first is not None
    job = app.get_job(first)
    assert job is not None and job.retry()
    assert run.state == "running"  # a retry resumes the run where it stopped
    run_until_idle(app)
    assert job.refresh().result(0) == 2
    assert [j.state.value for j in run.jobs()] == ["succeeded"] * 3
    assert run.state == "succeeded" and run.result(0) == 6


def test_a_retried_branch_resumes_only_what_waits_on_it(tmp_path: Path) -> None:
    app, double = _app(tmp_path)
    flow = app.workflow()
    a = flow.add(double.prepare(1))
    b = flow.add(double.prepare(2))
    c = flow.add(double.prepare(3), after=[a])
    run = flow.enqueue()
    run.cancel()
    assert a.id is not None and b.id is not None and c.id is not None
    assert app.store.retry(a.id, 0, 0.0)
    run_until_idle(app)
    states = {j.id: j.state.value for j in run.jobs()}
    assert states == {a.id: "succeeded", b.id: "cancelled", c.id: "succeeded"}
    assert run.state == "failed"  # b is still cancelled: the run did not all succeed


def test_retry_of_a_step_cancelled_by_hand_waits_for_its_upstream_again(tmp_path: Path) -> None:
    app, double = _app(tmp_path)
    flow = litejobs.chain(double.prepare(1), double.prepare(2))
    run = flow.enqueue()
    first, second = (app.get_job(s.id or 0) for s in flow.steps)
    assert first is not None and second is not None
    assert second.cancel() and second.state.value == "cancelled"
    assert second.retry()  # its upstream step has not run yet: it waits for it again
    assert second.state.value == "waiting" and first.refresh().state.value == "queued"
    run_until_idle(app)
    assert run.state == "succeeded" and run.result(0) == 4


def test_a_refused_retry_names_the_token_that_ended_at_the_root(tmp_path: Path) -> None:
    app, double = _app(tmp_path)
    token = app.create_token(timeout=60)
    flow = app.workflow()
    a = flow.add(double.prepare(1), after=[token])
    b = flow.add(double.prepare(2), after=[a])
    flow.enqueue()
    app.get_job(token.id).cancel()  # type: ignore[union-attr]
    job_b = app.get_job(b.id or 0)
    assert job_b is not None and job_b.state.value == "cancelled"
    try:
        job_b.retry()
    except ValueError as exc:
        text = str(exc)
    else:
        raise AssertionError("a retry behind a cancelled token was not refused")
    assert f"waits on step {a.id}" in text and f"token {token.id}" in text
    assert "create a new token" in text
