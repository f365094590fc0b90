"""The ``litejobs`` command on workflows: ``workflows``, ``token complete``, ``jobs --workflow``,
``show`` of steps, continuations and tokens, ``retry``/``cancel`` of steps, ``stats`` and
``explain`` of waiting jobs. Real files; the runs are driven in process (run_until_idle)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import litejobs
from litejobs.cli import main
from litejobs.testing import Clock, run_until_idle
from tests.conftest import one_line_error

ENV_VARS = ("LITEJOBS_DATABASE", "LITEJOBS_APP", "LITEJOBS_WORKERS", "LITEJOBS_CONFIG",
            "LITEJOBS_GRACE", "LITEJOBS_DURABILITY")


class Env:
    """An App on a fresh file with a few tasks, and the CLI on the same file."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "jobs.db"
        self.app = app = litejobs.App(self.db)
        self.runner = CliRunner()

        @app.task(name="wf.add")
        def add(a: int, b: int = 0) -> int:
            return a + b

        @app.task(name="wf.total")
        def total() -> Any:
            return litejobs.current_job().results()

        @app.task(name="wf.boom", retries=0)
        def boom() -> None:
            raise ValueError("boom")

        @app.task(name="wf.split")
        def split(n: int) -> litejobs.Then:
            return litejobs.then([add.prepare(i, i) for i in range(n)], total.prepare())

        self.add, self.total, self.boom, self.split = add, total, boom, split
        app.stats()  # creates the file

    def __call__(self, *args: Any) -> Result:
        return self.runner.invoke(main, [*map(str, args), "--database", str(self.db)])

    def ok(self, *args: Any) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    def json(self, *args: Any) -> Any:
        return json.loads(self.ok(*args, "--json").output)

    def state(self, job_id: int) -> str:
        job = self.app.get_job(job_id)
        assert job is not None
        return job.state.value


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.chdir(tmp_path)  # no stray ./litejobs.toml
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return Env(tmp_path)


def ids(steps: list[litejobs.workflows.Step]) -> list[int]:
    out = [s.id for s in steps]
    assert all(i is not None for i in out)
    return [int(i) for i in out if i is not None]


def failed_chain(env: Env) -> tuple[int, int, int]:
    """boom -> add -> total, run: boom failed, the two after it cancelled."""
    flow = env.app.workflow("broken")
    x = flow.add(env.boom.prepare())
    y = flow.add(env.add.prepare(1, 1), after=[x])
    z = flow.add(env.total.prepare(), after=[y])
    flow.enqueue()
    run_until_idle(env.app)
    a, b, c = ids([x, y, z])
    assert [env.state(a), env.state(b), env.state(c)] == ["failed", "cancelled", "cancelled"]
    return a, b, c


# --- litejobs workflows ------------------------------------------------------------------------


def test_workflows_lists_runs_newest_first_with_counts_per_state(env: Env) -> None:
    assert env.ok("workflows").output.strip() == "no workflow runs"
    assert env.json("workflows") == []
    done = litejobs.chord([env.add.prepare(1, 2), env.add.prepare(3, 4)],
                          then=env.total.prepare()).enqueue()
    run_until_idle(env.app)
    failed_chain(env)
    token = env.app.create_token(timeout=600)
    flow = env.app.workflow("approval")
    flow.add(env.add.prepare(1), after=[token])
    flow.add(env.add.prepare(2))
    pending = flow.enqueue()

    runs = env.json("workflows")
    assert [r["id"] for r in runs] == [pending.id, pending.id - 1, done.id]
    assert [r["state"] for r in runs] == ["running", "failed", "succeeded"]
    assert [r["name"] for r in runs] == ["approval", "broken", None]
    assert runs[0]["counts"] == {"waiting": 2, "queued": 1}  # the token joined the run
    assert runs[1]["counts"] == {"failed": 1, "cancelled": 2}
    assert runs[2]["counts"] == {"succeeded": 3}
    assert set(runs[0]) == {"id", "name", "state", "created_at", "cancelled_at", "counts"}
    assert runs[0]["created_at"].startswith(time.strftime("%Y-", time.gmtime()))

    assert [r["id"] for r in env.json("workflows", "--state", "failed")] == [pending.id - 1]
    assert [r["id"] for r in env.json("workflows", "--state", "succeeded")] == [done.id]
    assert env.json("workflows", "--state", "cancelled") == []
    assert [r["id"] for r in env.json("workflows", "--limit", "1")] == [pending.id]
    # --limit counts the runs shown, after the state filter
    assert [r["id"] for r in env.json("workflows", "--state", "succeeded", "--limit", "1")] \
        == [done.id]

    lines = env.ok("workflows").output.splitlines()
    assert lines[0].split() == ["ID", "STATE", "CREATED", "NAME", "STEPS"]
    assert str(pending.id) in lines[1] and "approval" in lines[1]
    assert lines[1].rstrip().endswith("waiting=2 queued=1")
    assert lines[2].rstrip().endswith("failed=1 cancelled=2")
    assert "no cancelled workflow runs" in env.ok("workflows", "--state", "cancelled").output

    pending.cancel()
    assert [r["id"] for r in env.json("workflows", "--state", "cancelled")] == [pending.id]


def test_workflows_refuses_an_unknown_state(env: Env) -> None:
    result = env("workflows", "--state", "waiting")
    assert result.exit_code == 2 and "running" in result.output


# --- litejobs token complete -------------------------------------------------------------------


def test_token_complete_gives_its_data_to_the_step_after_it_once(env: Env) -> None:
    token = env.app.create_token(timeout=600)
    flow = env.app.workflow()
    step = flow.add(env.total.prepare(), after=[token])
    run = flow.enqueue()
    run_until_idle(env.app)
    assert step.id is not None and env.state(step.id) == "waiting"

    out = env.ok("token", "complete", token.id, "--data", '{"approved": true}').output
    assert out.strip() == f"token {token.id} completed"
    assert env.state(step.id) == "queued"  # in the completion's own transaction
    run_until_idle(env.app)
    assert run.result(timeout=5) == [{"approved": True}]

    one_line_error(env("token", "complete", token.id, "--data", "1"),
                   f"token {token.id} was already completed", "once")
    assert env.app.get_job(token.id).result(timeout=1) == {"approved": True}


def test_token_complete_without_data_is_null(env: Env) -> None:
    token = env.app.create_token()
    env.ok("token", "complete", token.id)
    assert env.app.get_job(token.id).result(timeout=1) is None


@pytest.mark.parametrize("data, fragment", [
    ("{approved: true}", "--data must be JSON"),
    ("yes", "--data must be JSON"),
    ("[" * 100_000, "nested too deeply"),
])
def test_token_complete_refuses_bad_json_and_leaves_the_token(env: Env, data: str,
                                                              fragment: str) -> None:
    token = env.app.create_token()
    one_line_error(env("token", "complete", token.id, "--data", data), fragment)
    assert env.state(token.id) == "waiting"


def test_token_complete_refuses_what_is_not_a_waiting_token(env: Env) -> None:
    job = env.add.enqueue(1)
    one_line_error(env("token", "complete", job.id), f"job {job.id} is not a token")
    one_line_error(env("token", "complete", 999), "token 999 does not exist")
    clock = Clock()
    token = env.app.create_token(timeout=5)
    clock.advance(10)
    run_until_idle(env.app, clock=clock)
    one_line_error(env("token", "complete", token.id), f"token {token.id} is failed",
                   "timeout", "can no longer be completed")
    big = '"' + "x" * (env.app.max_payload + 10) + '"'
    other = env.app.create_token()
    one_line_error(env("token", "complete", other.id, "--data", big), "max_payload")
    assert env.state(other.id) == "waiting"


# --- litejobs jobs --workflow ------------------------------------------------------------------


def test_jobs_workflow_lists_the_steps_of_one_run(env: Env) -> None:
    first = litejobs.chain(env.add.prepare(1), env.add.prepare(2)).enqueue()
    flow = env.app.workflow("tagged")
    a = flow.add(env.add.options(tags=["t1"]).prepare(3))
    b = flow.add(env.add.prepare(4), after=[a])
    second = flow.enqueue()
    env.add.options(tags=["t1"]).enqueue(5)  # no workflow

    listed = env.json("jobs", "--workflow", second.id)
    assert [j["id"] for j in listed] == ids([b, a])
    assert {j["workflow"] for j in listed} == {second.id}
    assert [j["id"] for j in env.json("jobs", "--workflow", first.id)] == \
        [j.id for j in reversed(first.jobs())]
    assert [j["id"] for j in env.json("jobs", "--workflow", second.id, "--tag", "t1")] == \
        ids([a])
    assert [j["id"] for j in env.json("jobs", "--workflow", second.id, "--state",
                                      "waiting")] == ids([b])
    assert env.json("jobs", "--workflow", second.id + 1) == []
    table = env.ok("jobs", "--state", "waiting").output
    assert "waiting" in table and str(b.id) in table
    assert env.json("jobs", "--workflow", "abc") == []  # run ids are numbers: no such run


# --- litejobs show -----------------------------------------------------------------------------


def test_show_a_step_names_its_run_and_its_upstream_in_after_order(env: Env) -> None:
    flow = env.app.workflow("diamond")
    a = flow.add(env.add.prepare(1))
    b = flow.add(env.add.prepare(2))
    c = flow.add(env.total.prepare(), after=[b, a])  # not in id order
    d = flow.add(env.total.prepare(), after=[c])
    run = flow.enqueue()
    assert a.id is not None and c.id is not None

    data = env.json("show", c.id)
    assert data["workflow"] == run.id
    assert data["run"] == {"id": run.id, "name": "diamond", "state": "running"}
    assert data["after"] == ids([b, a])
    assert data["downstream"] == ids([d])
    assert data["continuation"] is None and data["token"] is None
    assert {"progress", "metadata", "tags", "attempts"} <= set(data)

    out = env.ok("show", c.id).output
    assert f"workflow: run {run.id} 'diamond', running" in out
    lines = out.splitlines()
    at = lines.index("        after: 2 step(s)")
    assert lines[at + 1].split() == [str(b.id), "queued", "wf.add"]
    assert lines[at + 2].split() == [str(a.id), "queued", "wf.add"]
    assert lines[at + 3] == "   downstream: 1 step(s)"
    assert lines[at + 4].split() == [str(d.id), "waiting", "wf.total"]

    run_until_idle(env.app)
    data = env.json("show", a.id)
    assert data["after"] == [] and data["downstream"] == [c.id]
    assert data["run"]["state"] == "succeeded"
    plain = env.add.enqueue(1)
    data = env.json("show", plain.id)
    assert (data["workflow"], data["run"], data["after"], data["downstream"]) == \
        (None, None, [], [])
    assert "workflow" not in env.ok("show", plain.id).output


def test_show_a_job_that_returned_then_names_its_continuation(env: Env) -> None:
    parent = env.split.enqueue(3)
    run_until_idle(env.app)
    assert parent.result(timeout=5) == [0, 2, 4]
    data = env.json("show", parent.id)
    cont = data["continuation"]
    assert cont is not None and data["workflow"] is not None
    assert data["run"]["state"] == "succeeded"
    assert f"continuation: job {cont} (returned litejobs.then" in env.ok("show", parent.id).output
    child = env.json("show", cont)
    assert len(child["after"]) == 3 and child["workflow"] == data["workflow"]


def test_show_a_token_says_it_is_one_and_its_timeout(env: Env) -> None:
    token = env.app.create_token(timeout=600)
    flow = env.app.workflow()
    step = flow.add(env.total.prepare(), after=[token])
    flow.enqueue()
    out = env.ok("show", token.id).output
    assert "token: yes (timeout 600 s: fails at " in out
    assert f"litejobs token complete {token.id}" in out
    assert f"{step.id}" in out.split("downstream:")[1]
    data = env.json("show", token.id)
    assert data["token"]["timeout"] == pytest.approx(600)
    assert data["downstream"] == ids([step])
    free = env.app.create_token()
    assert "token: yes (no timeout)" in env.ok("show", free.id).output
    assert env.json("show", free.id)["token"] == {"timeout": None, "expires_at": None}


def test_show_lists_at_most_twenty_neighbours_and_json_all(env: Env) -> None:
    parent = env.split.enqueue(30)
    run_until_idle(env.app)
    cont = env.json("show", parent.id)["continuation"]
    data = env.json("show", cont)
    assert len(data["after"]) == 30
    out = env.ok("show", cont).output
    assert "after: 30 step(s)" in out and "… and 10 more" in out


# --- retry and cancel of steps -----------------------------------------------------------------


def test_retry_of_a_step_behind_a_failed_one_is_refused_in_one_line(env: Env) -> None:
    a, b, c = failed_chain(env)
    # c names the step that failed at the root, not b (blocked behind it too)
    one_line_error(env("retry", c), f"job {c} waits on step {b}", f"retry {a} instead")
    one_line_error(env("retry", b), f"job {b} waits on step {a}")
    assert env.state(c) == "cancelled"
    out = env.ok("retry", a).output
    assert out.strip() == f"job {a} queued again"
    assert [env.state(a), env.state(b), env.state(c)] == ["queued", "waiting", "waiting"]


def test_bulk_retry_says_how_many_steps_it_skipped(env: Env) -> None:
    a, b, c = failed_chain(env)
    out = env.ok("retry", "--state", "cancelled", "-y").output
    assert "retry: 0 job(s)" in out
    assert "skipped 2 workflow step(s)" in out
    assert f"2 stay cancelled or failed behind step(s) {a}, {b}: retry those" in out
    assert [env.state(b), env.state(c)] == ["cancelled", "cancelled"]

    out = env.ok("retry", "--state", "failed", "--state", "cancelled", "-y").output
    assert "retry: 1 job(s)" in out
    assert "skipped 2 workflow step(s)" in out and "2 of them wait again" in out
    assert "stay" not in out
    assert [env.state(a), env.state(b), env.state(c)] == ["queued", "waiting", "waiting"]
    run_until_idle(env.app)
    assert env.state(a) == "failed"  # boom fails again; the others are cancelled again
    assert env.state(c) == "cancelled"


def test_bulk_retry_skips_a_timed_out_token(env: Env) -> None:
    clock = Clock()
    token = env.app.create_token(timeout=5)
    flow = env.app.workflow()
    flow.add(env.total.prepare(), after=[token])
    flow.enqueue()
    clock.advance(10)
    run_until_idle(env.app, clock=clock)
    assert env.state(token.id) == "failed"
    out = env.ok("retry", "--state", "failed", "-y").output
    assert f"skipped 1 token(s) ({token.id}): a token is not retried" in out
    assert env.state(token.id) == "failed"
    one_line_error(env("retry", token.id), f"job {token.id} is a token")


def test_cancel_a_waiting_step_cancels_what_waits_on_it(env: Env) -> None:
    a, b, c = ids_of_chain(env)
    out = env.ok("cancel", b).output
    assert out.strip() == f"job {b} cancelled"
    assert [env.state(a), env.state(b), env.state(c)] == ["queued", "cancelled", "cancelled"]
    assert env.app.get_job(c).error == f"upstream step {b} cancelled"


def test_bulk_cancel_of_waiting_steps(env: Env) -> None:
    a, b, c = ids_of_chain(env)
    plain = env.add.enqueue(1)
    out = env.ok("cancel", "--state", "waiting", "-y").output
    assert "cancel: 2 job(s)" in out
    assert [env.state(a), env.state(b), env.state(c)] == ["queued", "cancelled", "cancelled"]
    assert env.state(plain.id) == "queued"
    # the default takes every pending state, waiting included: a, plain, a2 and b2 (c2, a
    # wf.total step, is cancelled by the cascade, not counted)
    a2, b2, c2 = ids_of_chain(env)
    assert "cancel: 4 job(s)" in env.ok("cancel", "--task", "wf.add", "-y").output
    assert {env.state(i) for i in (a, a2, b2, c2, plain.id)} == {"cancelled"}


def ids_of_chain(env: Env) -> tuple[int, int, int]:
    run = litejobs.chain(env.add.prepare(1), env.add.prepare(2), env.total.prepare()).enqueue()
    a, b, c = (j.id for j in run.jobs())
    return a, b, c


# --- stats and explain -------------------------------------------------------------------------


def test_stats_shows_waiting(env: Env) -> None:
    ids_of_chain(env)
    data = env.json("stats")
    assert next(iter(data["states"])) == "waiting"
    assert data["states"]["waiting"] == 2 and data["states"]["queued"] == 1
    lines = env.ok("stats").output.splitlines()
    assert lines[0].split()[:2] == ["QUEUE", "waiting"]
    assert lines[-1].split()[:3] == ["(all)", "2", "0"]


def test_explain_a_waiting_step_names_the_upstream_steps_it_waits_on(env: Env) -> None:
    token = env.app.create_token(timeout=600)
    flow = env.app.workflow()
    a = flow.add(env.add.prepare(1))
    b = flow.add(env.add.options(queue="later").prepare(2))
    c = flow.add(env.total.prepare(), after=[a, b, token])
    flow.enqueue()
    assert a.id is not None and c.id is not None
    run_until_idle(env.app, queues=["default"])  # a runs, b waits in its queue
    assert env.state(a.id) == "succeeded"
    out = env.ok("explain", c.id).output.strip()
    assert out.startswith(f"job {c.id} (wf.total): waiting on 2 of its 3 upstream step(s): ")
    assert f"job {b.id} (wf.add, queued)" in out
    assert f"token {token.id} (waiting for `litejobs token complete {token.id}` until " in out
    data = env.json("explain", c.id)
    assert data["reason"] == "waiting_upstream" and data["state"] == "waiting"
    assert data["upstream"] == [a.id, b.id, token.id]
    assert data["waiting_on"] == [{"id": b.id, "state": "queued", "task": "wf.add"},
                                  {"id": token.id, "state": "waiting",
                                   "task": "litejobs.token"}]


def test_explain_a_token_and_a_continued_job(env: Env) -> None:
    token = env.app.create_token(timeout=600)
    out = env.ok("explain", token.id).output
    assert f"a token, waiting for `litejobs token complete {token.id}` until " in out
    assert "s from now; then it fails" in out
    assert env.json("explain", token.id)["reason"] == "token"
    free = env.app.create_token()
    assert "(no timeout)" in env.ok("explain", free.id).output
    parent = env.split.enqueue(2)
    run_until_idle(env.app)
    data = env.json("explain", parent.id)
    assert data["reason"] == "continued" and data["continuation"] is not None
    assert f"its result is job {data['continuation']}'s" in data["message"]
