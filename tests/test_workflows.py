"""Workflows in-process (issue 12 items 1-4): chains, groups and chords, the fan-in and its
delay, ``litejobs.then`` continuations, tokens, failure, retry and cancel of a run, and pruning.

Every test runs on a real SQLite file with ``litejobs.testing.run_until_idle`` (the same
store, claims and outcome records as under ``litejobs run``, in this process); a ``Clock``
says when scheduled steps and token timeouts are due. States are read back from the file after
each run, so a step that started too early, or a fan-in that fired twice, shows.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import litejobs
from litejobs import JobCancelled, JobFailed, State
from litejobs.testing import Clock, run_until_idle


def _add(a: int, b: int) -> int:
    return a + b


def _results() -> list[Any]:
    return litejobs.current_job().results()


def _total() -> int:
    return sum(litejobs.current_job().results())


def _boom(message: str = "nope") -> None:
    raise ValueError(message)


def _fixable(flag: str) -> str:
    """Fails while the file ``flag`` exists: a bug fixed by removing it."""
    if os.path.exists(flag):
        raise ValueError("broken until fixed")
    return "fixed"


@pytest.fixture
def wf(tmp_path: Path) -> SimpleNamespace:
    """An App on a fresh file and its tasks (every one with retries=0: a failure is final)."""
    app = litejobs.App(tmp_path / "jobs.db")
    t = SimpleNamespace(app=app, dir=tmp_path, flag=str(tmp_path / "broken"))
    t.add = app.task(name="wf.add", retries=0)(_add)
    t.results = app.task(name="wf.results", retries=0)(_results)
    t.total = app.task(name="wf.total", retries=0)(_total)
    t.boom = app.task(name="wf.boom", retries=0)(_boom)
    t.fixable = app.task(name="wf.fixable", retries=0)(_fixable)

    def split(n: int) -> litejobs.Then:
        return litejobs.then([t.add.prepare(i, i) for i in range(n)], t.total.prepare())

    def nested(n: int) -> litejobs.Then:
        # n levels of continuations, each adding its own child's result to the next
        if n == 0:
            return litejobs.then([t.add.prepare(100, 0)], t.total.prepare())
        return litejobs.then([t.add.prepare(n, 0)], t.nested.prepare(n - 1))

    t.split = app.task(name="wf.split", retries=0)(split)
    t.nested = app.task(name="wf.nested", retries=0)(nested)
    return t


def states(app: litejobs.App, *steps: Any) -> list[str]:
    """The states of these steps (Step, Token or Job: anything with an id), read now."""
    out = []
    for s in steps:
        job = app.get_job(s.id)
        assert job is not None, f"job {s.id} is gone"
        out.append(job.state.value)
    return out


def row(app: litejobs.App, job_id: int | None) -> dict[str, Any]:
    assert job_id is not None
    r = app.store.get_job(job_id)
    assert r is not None
    return dict(r)


def job(app: litejobs.App, job_id: int | None) -> litejobs.Job:
    assert job_id is not None
    j = app.get_job(job_id)
    assert j is not None
    return j


# --- shapes: chord, chain, group ---------------------------------------------------------------


def test_chord_fan_in_runs_once_with_results_in_the_order_of_after(wf: SimpleNamespace) -> None:
    # higher priority runs first: the upstream steps finish in the reverse of their order
    calls = [wf.add.options(priority=i).prepare(i, 10 * i) for i in range(5)]
    run = litejobs.chord(calls, then=wf.results.prepare()).enqueue()
    assert run.state == "running"
    assert [j.state for j in run.jobs()] == [State.QUEUED] * 5 + [State.WAITING]
    report = run_until_idle(wf.app)
    assert report.succeeded == 6 and report.failed == 0
    jobs = run.jobs()
    finished = [row(wf.app, j.id)["finished_at"] for j in jobs[:5]]
    assert finished == sorted(finished, reverse=True)  # they did end in reverse order
    assert run.state == "succeeded"
    assert run.result(timeout=1) == [11 * i for i in range(5)]
    fan_in = jobs[-1]
    assert len(fan_in.attempts()) == 1
    assert row(wf.app, fan_in.id)["started_at"] >= max(finished)
    assert run.counts() == {"succeeded": 6}


def test_chain_passes_each_result_to_the_next_step(wf: SimpleNamespace) -> None:
    run = litejobs.chain(wf.add.prepare(1, 2), wf.results.prepare(),
                         wf.results.prepare()).enqueue()
    a, b, c = run.jobs()
    assert states(wf.app, a, b, c) == ["queued", "waiting", "waiting"]
    assert run_until_idle(wf.app, max_jobs=1).succeeded == 1
    assert states(wf.app, a, b, c) == ["succeeded", "queued", "waiting"]
    assert run_until_idle(wf.app, max_jobs=1).succeeded == 1
    assert states(wf.app, a, b, c) == ["succeeded", "succeeded", "queued"]
    run_until_idle(wf.app)
    assert job(wf.app, b.id).result(0) == [3]
    assert run.result(timeout=1) == [[3]]


def test_group_runs_at_once_and_its_result_lists_every_step(wf: SimpleNamespace) -> None:
    run = litejobs.group([wf.add.prepare(1, 1), wf.add.prepare(2, 2),
                          wf.results.prepare()]).enqueue()
    assert [j.state for j in run.jobs()] == [State.QUEUED] * 3
    run_until_idle(wf.app)
    assert run.result(timeout=1) == [2, 4, []]  # a step after nothing has no results


def test_results_follow_the_order_of_after_not_of_creation(wf: SimpleNamespace) -> None:
    flow = wf.app.workflow("order")
    a = flow.add(wf.add.prepare(1, 0))
    b = flow.add(wf.add.prepare(2, 0))
    c = flow.add(wf.add.prepare(3, 0))
    d = flow.add(wf.results.prepare(), after=[c, a, b])
    e = flow.add(wf.results.prepare(), after=b)  # one step, not in a list
    run = flow.enqueue()
    assert run.name == "order" and all(s.id is not None for s in (a, b, c, d, e))
    run_until_idle(wf.app)
    assert job(wf.app, d.id).result(0) == [3, 1, 2]
    assert job(wf.app, e.id).result(0) == [2]
    assert run.result(timeout=1) == [[3, 1, 2], [2]]


def test_a_step_starts_only_after_every_upstream_step_succeeded(wf: SimpleNamespace) -> None:
    flow = wf.app.workflow()
    a = flow.add(wf.add.prepare(1, 0))
    b = flow.add(wf.add.options(delay=10).prepare(2, 0))
    c = flow.add(wf.add.options(delay=20).prepare(3, 0))
    d = flow.add(wf.results.prepare(), after=[a, b, c])
    e = flow.add(wf.results.prepare(), after=[d])
    run = flow.enqueue()
    clock = Clock()
    assert run_until_idle(wf.app, clock=clock).succeeded == 1
    assert states(wf.app, a, b, c, d, e) == [
        "succeeded", "scheduled", "scheduled", "waiting", "waiting"]
    clock.advance(10.5)
    assert run_until_idle(wf.app, clock=clock).succeeded == 1
    assert states(wf.app, a, b, c, d, e) == [
        "succeeded", "succeeded", "scheduled", "waiting", "waiting"]
    assert run.state == "running"
    clock.advance(10)
    assert run_until_idle(wf.app, clock=clock).succeeded == 3  # c, then d, then e
    assert states(wf.app, a, b, c, d, e) == ["succeeded"] * 5
    assert job(wf.app, d.id).result(0) == [1, 2, 3]
    assert run.result(timeout=1) == [[1, 2, 3]]
    assert [len(job(wf.app, s.id).attempts()) for s in (a, b, c, d, e)] == [1] * 5


def test_a_delay_on_a_waiting_step_counts_from_its_upstream_success(
        wf: SimpleNamespace) -> None:
    flow = wf.app.workflow()
    a = flow.add(wf.add.prepare(1, 1))
    b = flow.add(wf.results.options(delay=30).prepare(), after=[a])
    run = flow.enqueue()
    assert states(wf.app, a, b) == ["queued", "waiting"]
    clock = Clock()
    clock.advance(100)  # a runs long after the enqueue: b's delay counts from then
    assert run_until_idle(wf.app, clock=clock).succeeded == 1
    assert states(wf.app, a, b) == ["succeeded", "scheduled"]
    done = row(wf.app, a.id)["finished_at"]
    assert done == pytest.approx(clock.now)
    assert row(wf.app, b.id)["run_at"] == pytest.approx(done + 30)
    clock.advance(29)
    assert run_until_idle(wf.app, clock=clock).succeeded == 0
    assert states(wf.app, b) == ["scheduled"]
    clock.advance(2)
    assert run_until_idle(wf.app, clock=clock).succeeded == 1
    assert run.result(timeout=1) == [2]


def test_a_chain_runs_to_its_end_under_a_clock_set_in_the_past(wf: SimpleNamespace) -> None:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    run = litejobs.chain(wf.add.prepare(1, 2), wf.results.prepare()).enqueue()
    assert run_until_idle(wf.app, clock=clock).succeeded == 2
    assert run.result(timeout=1) == [3]


def test_then_children_run_in_the_same_run_until_idle_under_a_clock(
        wf: SimpleNamespace) -> None:
    clock = Clock()
    parent = wf.split.enqueue(2)
    assert run_until_idle(wf.app, clock=clock).succeeded == 4
    assert parent.result(timeout=1) == 2


# --- continuations (litejobs.then) -------------------------------------------------------------


def test_then_writes_children_and_continuation_with_the_parent_success(
        wf: SimpleNamespace) -> None:
    parent = wf.split.enqueue(4)
    assert parent.workflow is None
    assert run_until_idle(wf.app, max_jobs=1).succeeded == 1  # the parent alone
    parent.refresh()
    assert parent.state is State.SUCCEEDED and parent.workflow is not None
    steps = [j for j in wf.app.jobs(workflow=parent.workflow) if j.id != parent.id]
    steps.sort(key=lambda j: j.id)
    assert [j.task for j in steps] == ["wf.add"] * 4 + ["wf.total"]
    assert [j.state for j in steps] == [State.QUEUED] * 4 + [State.WAITING]
    assert wf.app.store.upstream_of(steps[-1].id) == [j.id for j in steps[:4]]
    # the parent has succeeded, but its result is the continuation's: not there yet
    with pytest.raises(TimeoutError, match=f"job {steps[-1].id} is still waiting"):
        parent.result(timeout=0)
    run_until_idle(wf.app)
    assert parent.result(timeout=1) == sum(2 * i for i in range(4))
    assert job(wf.app, steps[-1].id).result(0) == 12
    assert len(parent.attempts()) == 1  # it never ran again


def test_then_with_no_children_queues_the_continuation_at_once(wf: SimpleNamespace) -> None:
    parent = wf.split.enqueue(0)
    run_until_idle(wf.app, max_jobs=1)
    parent.refresh()
    (cont,) = [j for j in wf.app.jobs(workflow=parent.workflow) if j.id != parent.id]
    assert cont.state is State.QUEUED
    run_until_idle(wf.app)
    assert parent.result(timeout=1) == 0


def test_job_result_follows_a_chain_of_continuations(wf: SimpleNamespace) -> None:
    parent = wf.nested.enqueue(3)
    report = run_until_idle(wf.app)
    # nested(3), (2), (1), (0) each with one child, then total
    assert report.succeeded == 4 + 4 + 1 and report.failed == 0
    assert parent.result(timeout=1) == 100
    workflow = job(wf.app, parent.id).workflow
    assert workflow is not None
    # every level joined the parent's run
    assert len(wf.app.jobs(workflow=workflow)) == 9


def test_steps_after_a_then_step_wait_for_its_continuation_and_see_its_result(
        wf: SimpleNamespace) -> None:
    flow = wf.app.workflow("then-in-a-flow")
    a = flow.add(wf.split.prepare(3))
    b = flow.add(wf.results.prepare(), after=[a])
    c = flow.add(wf.add.prepare(5, 5))
    d = flow.add(wf.results.prepare(), after=[c, a])
    run = flow.enqueue()
    assert run_until_idle(wf.app, max_jobs=1).succeeded == 1  # a: split, returns then()
    assert states(wf.app, a, b, d) == ["succeeded", "waiting", "waiting"]
    ids = {j.id for j in run.jobs()}
    assert len(ids) == 4 + 3 + 1  # the children and the continuation joined the run
    cont = row(wf.app, a.id)["continuation"]
    assert cont is not None and cont in ids
    # b and d now wait on the continuation, not on a
    assert wf.app.store.upstream_of(b.id) == [cont]
    assert wf.app.store.upstream_of(d.id) == [c.id, cont]
    for _ in range(4):  # c and the 3 children, one at a time: b and d keep waiting
        assert run_until_idle(wf.app, max_jobs=1).succeeded == 1
        assert states(wf.app, b, d) == ["waiting", "waiting"]
    assert states(wf.app, c) == ["succeeded"]
    assert run_until_idle(wf.app, max_jobs=1).succeeded == 1  # the continuation
    assert states(wf.app, b, d) == ["queued", "queued"]
    run_until_idle(wf.app)
    assert job(wf.app, b.id).result(0) == [0 + 2 + 4]
    assert job(wf.app, d.id).result(0) == [10, 6]
    assert job(wf.app, a.id).result(0) == 6
    assert run.state == "succeeded"
    assert run.result(timeout=1) == [[6], [10, 6]]


def test_a_failed_continuation_fails_the_parent_result_and_the_run(
        wf: SimpleNamespace) -> None:
    wf.app.task(name="wf.split_boom", retries=0)(
        lambda: litejobs.then([wf.add.prepare(1, 1)], wf.boom.prepare("in continuation")))
    parent = wf.app.tasks["wf.split_boom"].enqueue()
    run_until_idle(wf.app)
    with pytest.raises(JobFailed, match="in continuation"):
        parent.result(timeout=1)
    workflow = job(wf.app, parent.id).workflow
    assert workflow is not None
    assert wf.app.store.run(workflow)["state"] == "failed"


# --- tokens ------------------------------------------------------------------------------------


def test_a_token_completes_once_and_its_data_is_the_downstream_result(
        wf: SimpleNamespace) -> None:
    token = wf.app.create_token(timeout=3600)
    flow = wf.app.workflow()
    a = flow.add(wf.add.prepare(1, 1))
    b = flow.add(wf.results.prepare(), after=[a, token])
    run = flow.enqueue()
    assert states(wf.app, token, a, b) == ["waiting", "queued", "waiting"]
    assert run_until_idle(wf.app).succeeded == 1
    assert states(wf.app, token, a, b) == ["waiting", "succeeded", "waiting"]
    assert run.state == "running"
    wf.app.complete_token(token.id, data={"approved": True})
    assert states(wf.app, token, b) == ["succeeded", "queued"]
    with pytest.raises(ValueError, match="already completed"):
        wf.app.complete_token(token, data={"approved": False})
    assert job(wf.app, token.id).result(0) == {"approved": True}  # not applied twice
    assert run_until_idle(wf.app).succeeded == 1
    assert run.result(timeout=1) == [2, {"approved": True}]
    assert len(job(wf.app, b.id).attempts()) == 1


def test_a_token_as_a_step_of_the_flow(wf: SimpleNamespace) -> None:
    token = wf.app.create_token()
    flow = wf.app.workflow()
    t = flow.add(token)
    b = flow.add(wf.results.prepare(), after=[t])
    run = flow.enqueue()
    assert t.id == token.id
    assert run_until_idle(wf.app).succeeded == 0
    wf.app.complete_token(token, data=[1, 2])
    run_until_idle(wf.app)
    assert job(wf.app, b.id).result(0) == [[1, 2]]
    assert run.state == "succeeded"


def test_a_token_completed_before_enqueue_counts_as_done(wf: SimpleNamespace) -> None:
    token = wf.app.create_token(timeout=60)
    wf.app.complete_token(token, data=5)
    flow = wf.app.workflow()
    b = flow.add(wf.results.prepare(), after=[token])
    run = flow.enqueue()
    assert states(wf.app, b) == ["queued"]
    run_until_idle(wf.app)
    assert run.result(timeout=1) == [5]


def test_a_failed_token_is_refused_at_enqueue_with_nothing_written(
        wf: SimpleNamespace) -> None:
    token = wf.app.create_token(timeout=1)
    clock = Clock()
    clock.advance(2)
    run_until_idle(wf.app, clock=clock)  # expires it
    assert states(wf.app, token) == ["failed"]
    before = wf.app.stats()
    runs_before = wf.app.store.runs()
    flow = wf.app.workflow()
    flow.add(wf.add.prepare(1, 1))
    flow.add(wf.results.prepare(), after=[token])
    with pytest.raises(ValueError, match=f"token {token.id} is failed"):
        flow.enqueue()
    assert wf.app.stats() == before
    assert wf.app.store.runs() == runs_before
    with pytest.raises(ValueError, match="can no longer be completed"):
        wf.app.complete_token(token, data=1)


def test_a_token_past_its_timeout_fails_and_cancels_what_waits_on_it(
        wf: SimpleNamespace) -> None:
    token = wf.app.create_token(timeout=60)
    flow = wf.app.workflow()
    a = flow.add(wf.results.prepare(), after=[token])
    b = flow.add(wf.results.prepare(), after=[a])
    c = flow.add(wf.add.prepare(1, 1))
    run = flow.enqueue()
    clock = Clock()
    clock.advance(30)
    assert run_until_idle(wf.app, clock=clock).succeeded == 1  # c; the token still waits
    assert states(wf.app, token, a, b, c) == ["waiting", "waiting", "waiting", "succeeded"]
    clock.advance(31)
    run_until_idle(wf.app, clock=clock)
    assert states(wf.app, token, a, b, c) == ["failed", "cancelled", "cancelled", "succeeded"]
    assert job(wf.app, token.id).error == "token not completed within its timeout of 60 s"
    assert job(wf.app, a.id).error == f"upstream step {token.id} failed"
    assert (job(wf.app, b.id).error or "").startswith("upstream step ")
    assert run.state == "failed"
    with pytest.raises(JobFailed) as caught:
        run.result(timeout=1)
    assert caught.value.job_id == token.id
    with pytest.raises(ValueError, match="can no longer be completed"):
        wf.app.complete_token(token, data=1)
    with pytest.raises(ValueError, match="is a token, which is not retried"):
        job(wf.app, token.id).retry()
    with pytest.raises(ValueError, match=f"waits on step {token.id}"):
        job(wf.app, a.id).retry()
    assert states(wf.app, token, a, b) == ["failed", "cancelled", "cancelled"]


def test_tokens_refuse_bad_input(wf: SimpleNamespace) -> None:
    plain = wf.add.enqueue(1, 1)
    with pytest.raises(ValueError, match="not a token"):
        wf.app.complete_token(plain.id, data=1)
    with pytest.raises(ValueError, match="does not exist"):
        wf.app.complete_token(10_000, data=1)
    token = wf.app.create_token()
    with pytest.raises(TypeError, match="JSON"):
        wf.app.complete_token(token, data=object())
    assert states(wf.app, token) == ["waiting"]  # a refused completion changes nothing
    with pytest.raises(ValueError, match="timeout"):
        wf.app.create_token(timeout=0)


# --- failure, retry, cancel --------------------------------------------------------------------


def _failing_run(wf: SimpleNamespace) -> tuple[litejobs.WorkflowRun, list[Any]]:
    """a (fails until the flag file goes) -> b -> c, and d beside them."""
    Path(wf.flag).touch()
    flow = wf.app.workflow("fails")
    a = flow.add(wf.fixable.prepare(wf.flag))
    b = flow.add(wf.results.prepare(), after=[a])
    c = flow.add(wf.results.prepare(), after=[b])
    d = flow.add(wf.add.prepare(2, 2))
    run = flow.enqueue()
    run_until_idle(wf.app)
    return run, [a, b, c, d]


def test_a_failed_step_cancels_everything_downstream_and_fails_the_run(
        wf: SimpleNamespace) -> None:
    run, (a, b, c, d) = _failing_run(wf)
    assert states(wf.app, a, b, c, d) == ["failed", "cancelled", "cancelled", "succeeded"]
    assert job(wf.app, b.id).error == f"upstream step {a.id} failed"
    assert (job(wf.app, c.id).error or "").startswith("upstream step ")
    assert [len(job(wf.app, s.id).attempts()) for s in (b, c)] == [0, 0]  # never ran
    assert run.state == "failed"
    with pytest.raises(JobFailed, match="broken until fixed") as caught:
        run.result(timeout=1)
    assert caught.value.job_id == a.id
    assert run.counts() == {"failed": 1, "cancelled": 2, "succeeded": 1}


@pytest.mark.parametrize("how", ["job.retry", "store.retry"])
def test_retry_of_the_failed_step_revives_what_it_cancelled(wf: SimpleNamespace,
                                                            how: str) -> None:
    run, (a, b, c, d) = _failing_run(wf)
    os.unlink(wf.flag)  # the bug is fixed
    if how == "job.retry":
        assert job(wf.app, a.id).retry() is True
    else:
        assert wf.app.store.retry(a.id, 0, time.time()) is True
    assert states(wf.app, a, b, c, d) == ["queued", "waiting", "waiting", "succeeded"]
    assert job(wf.app, b.id).error is None
    assert run.state == "running"
    assert run_until_idle(wf.app).succeeded == 3
    assert run.state == "succeeded"
    assert run.result(timeout=1) == [[["fixed"]], 4]
    assert [len(job(wf.app, s.id).attempts()) for s in (a, b, c, d)] == [2, 1, 1, 1]


def test_retry_of_a_step_blocked_by_its_upstream_is_refused(wf: SimpleNamespace) -> None:
    run, (a, b, c, _) = _failing_run(wf)
    for s in (b, c):
        with pytest.raises(ValueError, match=f"step {a.id if s is b else b.id}, which has not "
                                             "succeeded"):
            job(wf.app, s.id).retry()
    with pytest.raises(ValueError, match=f"retry {a.id} instead"):
        wf.app.store.retry(b.id, 0, time.time())
    assert states(wf.app, a, b, c) == ["failed", "cancelled", "cancelled"]  # nothing moved
    # a retry of many skips the blocked one and revives from the one it may retry
    os.unlink(wf.flag)
    assert wf.app.store.retry_many([b.id, a.id], 0, time.time()) == 1
    assert states(wf.app, a, b, c) == ["queued", "waiting", "waiting"]
    run_until_idle(wf.app)
    assert run.state == "succeeded"


def test_a_step_failing_again_after_its_retry_cancels_the_revived_steps_again(
        wf: SimpleNamespace) -> None:
    run, (a, b, c, _) = _failing_run(wf)
    assert job(wf.app, a.id).retry() is True  # not fixed
    run_until_idle(wf.app)
    assert states(wf.app, a, b, c) == ["failed", "cancelled", "cancelled"]
    assert run.state == "failed"


def test_cancel_of_a_run_cancels_every_pending_step(wf: SimpleNamespace) -> None:
    token = wf.app.create_token()
    flow = wf.app.workflow()
    a = flow.add(wf.add.prepare(1, 1))
    b = flow.add(wf.add.prepare(2, 2))
    c = flow.add(wf.results.prepare(), after=[a, b])
    d = flow.add(wf.add.options(delay=600).prepare(3, 3))
    e = flow.add(wf.results.prepare(), after=[token])
    run = flow.enqueue()
    assert run_until_idle(wf.app, max_jobs=1).succeeded == 1
    assert states(wf.app, a, b, c, d, e, token) == [
        "succeeded", "queued", "waiting", "scheduled", "waiting", "waiting"]
    n = run.cancel()
    assert n == 4  # b, c, d, e; the token is left waiting: another run may wait on it
    assert states(wf.app, a, b, c, d, e, token) == ["succeeded"] + ["cancelled"] * 4 + [
        "waiting"]
    assert run.state == "cancelled"
    with pytest.raises(JobCancelled):
        run.result(timeout=1)
    assert run_until_idle(wf.app, clock=Clock(time.time() + 3600)).succeeded == 0
    assert run.cancel() == 0


def test_cancel_of_a_run_leaves_a_token_another_run_waits_on(wf: SimpleNamespace) -> None:
    token = wf.app.create_token()
    first = wf.app.workflow("first")
    first.add(wf.results.prepare(), after=[token])
    one = first.enqueue()
    second = wf.app.workflow("second")
    b = second.add(wf.results.prepare(), after=[token])
    two = second.enqueue()
    one.cancel()
    assert one.state == "cancelled"
    assert two.state == "running" and states(wf.app, b) == ["waiting"]
    wf.app.complete_token(token, data="go")
    run_until_idle(wf.app)
    assert two.result(timeout=1) == ["go"]


# --- refused at enqueue, listing, pruning ------------------------------------------------------


@pytest.mark.parametrize("options", [{"key": "k"}, {"debounce": 5}])
def test_a_step_with_a_key_or_debounce_is_refused_with_nothing_written(
        wf: SimpleNamespace, options: dict[str, Any]) -> None:
    wf.add.enqueue(0, 0)
    before = wf.app.stats()
    flow = wf.app.workflow()
    a = flow.add(wf.add.prepare(1, 1))
    flow.add(wf.add.options(**options).prepare(2, 2), after=[a])
    with pytest.raises(ValueError, match=r"step 1 .*cannot have a key, unique_for or debounce"):
        flow.enqueue()
    assert wf.app.stats() == before
    assert wf.app.store.runs() == []
    assert [j.task for j in wf.app.jobs()] == ["wf.add"]


def test_a_unique_task_is_refused_as_a_step(wf: SimpleNamespace) -> None:
    unique = wf.app.task(name="wf.unique", unique_for=60)(_add)
    with pytest.raises(ValueError, match=r"step 0 .*unique_for"):
        litejobs.chain(unique.prepare(1, 1)).enqueue()
    assert wf.app.stats()["states"].get("queued", 0) == 0


def test_app_jobs_by_workflow_lists_exactly_the_run_steps(wf: SimpleNamespace) -> None:
    outside = wf.add.enqueue(1, 1)
    one = litejobs.chord([wf.add.prepare(1, 1), wf.add.prepare(2, 2)],
                         then=wf.total.prepare()).enqueue()
    two = litejobs.chain(wf.add.prepare(3, 3), wf.results.prepare()).enqueue()
    assert one.id != two.id
    ids_one = [j.id for j in wf.app.jobs(workflow=one.id)]
    assert ids_one == sorted(ids_one, reverse=True)  # newest first
    assert sorted(ids_one) == [j.id for j in one.jobs()]
    assert len(ids_one) == 3 and outside.id not in ids_one
    assert [j.id for j in wf.app.jobs(workflow=str(two.id))] == [
        j.id for j in reversed(two.jobs())]
    assert wf.app.jobs(workflow=two.id, state="waiting")[0].task == "wf.results"
    assert wf.app.jobs(workflow=10_000) == []
    assert all(j.workflow == one.id for j in one.jobs())
    assert job(wf.app, outside.id).workflow is None


def test_prune_keeps_a_succeeded_upstream_step_until_its_downstream_ended(
        wf: SimpleNamespace) -> None:
    token = wf.app.create_token()
    flow = wf.app.workflow()
    a = flow.add(wf.add.prepare(20, 22))
    b = flow.add(wf.results.prepare(), after=[a, token])
    run = flow.enqueue()
    plain = wf.add.enqueue(1, 1)
    run_until_idle(wf.app)
    assert states(wf.app, a, b, plain) == ["succeeded", "waiting", "succeeded"]

    def prune() -> int:
        return int(wf.app.store.write(lambda tx: tx.prune(time.time() + 3600, 500)))

    assert prune() == 1  # the plain job only
    assert wf.app.get_job(plain.id) is None
    assert states(wf.app, a, b) == ["succeeded", "waiting"]
    wf.app.complete_token(token, data="ok")
    assert states(wf.app, b) == ["queued"]
    assert prune() == 0  # b has not ended: a and the token stay, with their results
    run_until_idle(wf.app)
    assert job(wf.app, b.id).result(0) == [42, "ok"]
    assert prune() == 3  # now all of them
    assert wf.app.jobs(workflow=run.id) == []


def test_prune_keeps_a_then_parent_until_its_continuation_ended(wf: SimpleNamespace) -> None:
    wf.app.task(name="wf.split_later", retries=0)(
        lambda: litejobs.then([wf.add.options(delay=30 * 86400).prepare(1, 1)],
                              wf.total.prepare()))
    parent = wf.app.tasks["wf.split_later"].enqueue()
    run_until_idle(wf.app)
    assert parent.refresh().state is State.SUCCEEDED
    # past the default retention (7 days); the child is due in 30
    wf.app.store.write(lambda tx: tx.prune(time.time() + 8 * 86400, 500))
    with pytest.raises(TimeoutError):  # still waiting for its continuation, not gone
        parent.result(timeout=0)


def test_workflow_building_refuses_bad_input(wf: SimpleNamespace) -> None:
    flow = wf.app.workflow()
    other = wf.app.workflow()
    a = flow.add(wf.add.prepare(1, 1))
    with pytest.raises(ValueError, match="another workflow"):
        other.add(wf.add.prepare(1, 1), after=[a])
    with pytest.raises(TypeError, match=r"flow\.add takes"):
        flow.add(_add)
    with pytest.raises(ValueError, match="at least one step"):
        wf.app.workflow().enqueue()
    flow.enqueue()
    with pytest.raises(RuntimeError, match="already enqueued"):
        flow.enqueue()
    with pytest.raises(RuntimeError, match="already enqueued"):
        flow.add(wf.add.prepare(1, 1))


def test_a_steps_flow_key_keeps_its_rate(wf: SimpleNamespace) -> None:
    from litejobs.testing import Clock, run_until_idle

    clock = Clock(1_900_000_000.0).attach(wf.app)
    rated = wf.add.options(flow_key="api", rate_limit="1/s")
    run = litejobs.chain(rated.prepare(1, 1), rated.prepare(2, 2)).enqueue()
    steps = run.jobs()
    second = wf.app.store.get_job(steps[1].id)
    assert second is not None and (second["flow_rate"], second["flow_period"]) == (1, 1.0)
    assert run_until_idle(wf.app, clock=clock).succeeded == 1  # the second waits its window
    assert states(wf.app, *steps) == ["succeeded", "queued"]
    clock.advance(1.2)
    assert run_until_idle(wf.app, clock=clock).succeeded == 1
