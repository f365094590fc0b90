"""Workflows under real `litejobs run` processes (issue 12, "Process tests").

A chord's steps travel to workers as "K" frames with their upstream results, and a
``litejobs.then`` success comes back as a JSON frame; two supervisors that record the last two
upstream successes of a step at the same moment make exactly one downstream job; a supervisor
killed with SIGKILL right after a step's success was recorded loses no step, and the step
downstream runs once after a restart.

How often a step really ran is read from the log its task writes (``tests.apps.wfapp``: one
``O_APPEND`` line per start and end), never from what litejobs says. Waiting is on conditions
with deadlines (``wait_for``); the randomised test prints its seed. Each test runs on both
stores (the ``database`` fixture): a SQLite file, or a fresh PostgreSQL schema.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs import State
from litejobs.workflows import Step
from tests.apps import wfapp
from tests.conftest import JobLog, SupervisorProcess, alive, launch_supervisor, wait_for

pytestmark = pytest.mark.timeout(180)

APP_SPEC = "tests.apps.wfapp:app"


class Harness:
    """One test's database, task log, supervisors."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.dir = tmp_path
        self.db = database if "://" in database else tmp_path / "wf.db"
        self.log = tmp_path / "wf.log"
        self.app = wfapp.make_app(self.db)
        self.t = {name.split(".", 1)[1]: task for name, task in self.app.tasks.items()}
        self.sups: list[SupervisorProcess] = []
        self.cfg = tmp_path / "litejobs.toml"
        self.cfg.write_text(f'app = "{APP_SPEC}"\ndatabase = {json.dumps(str(self.db))}\n'
                            "lease = 5\n")

    def start(self, workers: int = 2, queues: str | None = None) -> SupervisorProcess:
        """Start `litejobs run` and return once it serves."""
        n = len(self.sups)
        cmd = [sys.executable, "-m", "litejobs", "run", "--config", str(self.cfg),
               "--workers", str(workers), "--grace", "5"]
        if queues is not None:
            cmd += ["--queues", queues]
        sup = launch_supervisor(cmd, self.dir, self.db, self.dir / f"supervisor-{n}.log")
        self.sups.append(sup)
        return sup

    def job(self, job_id: int | None) -> litejobs.Job:
        assert job_id is not None
        job = self.app.get_job(job_id)
        assert job is not None, f"job {job_id} is gone"
        return job

    def details(self) -> str:
        parts = [f"--- supervisor {i} (exit {s.proc.returncode}) ---\n{s.output()[-4000:]}"
                 for i, s in enumerate(self.sups)]
        return "\n".join([*parts, f"--- stats: {self.app.stats()['states']}"])

    def records(self) -> list[dict[str, Any]]:
        return JobLog(self.log).records()

    def events(self, event: str, job_id: int | None = None,
               task: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == event
                and (job_id is None or r["id"] == job_id)
                and (task is None or r["task"] == task)]

    def wait_run(self, run: litejobs.WorkflowRun, timeout: float = 60.0) -> None:
        wait_for(lambda: run.state != "running", timeout, f"workflow {run.id} to end",
                 interval=0.02, details=self.details)
        assert run.state == "succeeded", (run.counts(), self.details())

    def close(self) -> None:
        for sup in self.sups:
            sup.kill_group()


@pytest.fixture
def h(tmp_path: Path, database: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, database)
    yield harness
    harness.close()


# --- (a) a chord and a continuation under one supervisor --------------------------------------


def test_a_chord_of_20_steps_runs_its_fan_in_once_with_every_result_in_order(h: Harness) -> None:
    h.start(workers=2)
    path = str(h.log)
    # spread durations: steps end out of their order
    calls = [h.t["step"].prepare(path, {"i": i}, 0.002 * ((7 * i) % 5)) for i in range(20)]
    run = litejobs.chord(calls, then=h.t["fan_in"].prepare(path)).enqueue()
    assert run.result(timeout=60) == [{"i": i} for i in range(20)]
    h.wait_run(run)
    jobs = run.jobs()
    fan_in = jobs[-1]
    assert fan_in.task == "wf.fan_in"
    assert len(h.events("start", fan_in.id)) == 1
    assert [a.outcome for a in fan_in.attempts()] == ["succeeded"]
    # the fan-in started after every step had ended (the steps' own clocks)
    last_end = max(r["t"] for r in h.events("end", task="wf.step"))
    assert h.events("start", fan_in.id)[0]["t"] >= last_end
    assert len({r["pid"] for r in h.events("end", task="wf.step")}) <= 2
    assert run.counts() == {"succeeded": 21}


def test_then_under_a_supervisor_follows_continuations(h: Harness) -> None:
    h.start(workers=1)  # a parent that held its worker while its children ran would hang
    path = str(h.log)
    parent = h.t["split"].enqueue(path, 5)
    assert parent.result(timeout=60) == list(range(5))
    assert parent.refresh().state is State.SUCCEEDED and parent.workflow is not None
    # the parent ran once and no worker waited for its children: it ended before they began
    (parent_start,) = h.events("start", parent.id)
    assert len(h.app.jobs(workflow=parent.workflow)) == 1 + 5 + 1
    first_child = min(r["t"] for r in h.events("start", task="wf.step"))
    assert first_child >= parent_start["t"]
    # chains of continuations: nest(3) -> nest(2) -> nest(1) -> nest(0) -> fan_in of 3
    deep = h.t["nest"].enqueue(path, 3)
    assert deep.result(timeout=60) == [0, 1, 2]
    assert len(h.events("start", task="wf.nest")) == 4
    # a then() step inside a workflow: the step after it sees the continuation's result
    flow = h.app.workflow("split-in-flow")
    a = flow.add(h.t["split"].prepare(path, 3))
    flow.add(h.t["fan_in"].prepare(path), after=[a])
    run = flow.enqueue()
    assert run.result(timeout=60) == [[0, 1, 2]]


def test_cancel_of_a_run_stops_its_running_step_under_a_supervisor(h: Harness) -> None:
    h.start(workers=2)
    path = str(h.log)
    flow = h.app.workflow("to-cancel")
    a = flow.add(h.t["step"].prepare(path, 1, 30))
    b = flow.add(h.t["step"].prepare(path, 2), after=[a])
    c = flow.add(h.t["step"].options(delay=600).prepare(path, 3))
    run = flow.enqueue()
    wait_for(lambda: h.events("start", a.id), 20, "the first step to start", details=h.details)
    assert run.cancel() == 3
    assert run.state == "cancelled"
    assert [h.job(s.id).state for s in (a, b, c)] == [State.CANCELLED] * 3
    with pytest.raises(litejobs.JobCancelled):
        run.result(timeout=1)
    # the worker running it (a 30 s sleep) is stopped, not left to finish; the pool serves on
    (start,) = h.events("start", a.id)
    wait_for(lambda: not alive(start["pid"]), 20, "the cancelled step's worker to be stopped",
             details=h.details)
    assert h.t["step"].enqueue(path, "next").result(timeout=20) == "next"
    assert h.events("end", a.id) == []
    assert [x.outcome for x in h.job(a.id).attempts()] == ["interrupted"]
    assert [h.job(s.id).attempts() for s in (b, c)] == [[], []]


# --- (b) two supervisors record the last two upstream successes at once ------------------------


def test_two_supervisors_ending_the_last_two_upstream_steps_at_once_make_one_downstream_job(
        h: Harness) -> None:
    # Supervisor 0 serves queue qa, supervisor 1 queue qb, both the default queue (the
    # fan-ins'). Each round's upstream steps wait on one file, so they end within a
    # millisecond, on both supervisors, whose transactions then record the two successes
    # back to back: the second must ready the fan-in, and only it.
    sup_a = h.start(workers=2, queues="qa,default")
    sup_b = h.start(workers=2, queues="qb,default")
    path = str(h.log)
    rounds, per_round = 8, 2
    runs: list[tuple[litejobs.WorkflowRun, Step, Step, Step, str]] = []
    for r in range(rounds):
        go = h.dir / f"go-{r}"
        batch = []
        for k in range(per_round):
            flow = h.app.workflow(f"round-{r}-{k}")
            a = flow.add(h.t["gate"].options(queue="qa").prepare(path, str(go), f"a{r}.{k}"))
            b = flow.add(h.t["gate"].options(queue="qb").prepare(path, str(go), f"b{r}.{k}"))
            fan = flow.add(h.t["fan_in"].prepare(path), after=[a, b])
            batch.append((flow.enqueue(), a, b, fan, f"{r}.{k}"))
        started = 2 * per_round * (r + 1)
        wait_for(lambda: len(h.events("start", task="wf.gate")) >= started, 30,
                 f"round {r}'s gates to start on both supervisors", details=h.details)
        go.touch()
        for run, *_ in batch:
            h.wait_run(run)
        runs += batch
    workers_a, workers_b = sup_a.worker_pids(), sup_b.worker_pids()
    spreads = []
    for run, a, b, fan, label in runs:
        starts = h.events("start", fan.id)
        assert len(starts) == 1, f"fan-in {fan.id} of run {run.id} started {len(starts)} times"
        assert starts[0]["results"] == [f"a{label}", f"b{label}"]
        assert [x.outcome for x in h.job(fan.id).attempts()] == ["succeeded"]
        assert len(run.jobs()) == 3  # no second downstream job
        # each upstream step ran on its own supervisor
        assert {r["pid"] for r in h.events("end", a.id)} <= workers_a
        assert {r["pid"] for r in h.events("end", b.id)} <= workers_b
        ends = [r["t"] for r in h.events("end", a.id) + h.events("end", b.id)]
        spreads.append(max(ends) - min(ends))
    print(f"the two upstream steps of a run ended {min(spreads) * 1000:.2f} to "
          f"{max(spreads) * 1000:.2f} ms apart (median "
          f"{sorted(spreads)[len(spreads) // 2] * 1000:.2f} ms)")
    assert len(h.events("start", task="wf.fan_in")) == rounds * per_round


# --- (c) kill -9 right after a step's success -------------------------------------------------


def kill_9(sup: SupervisorProcess) -> None:
    """kill -9 the supervisor first (nothing of it runs after), then its workers with it,
    and return once they are all gone."""
    workers = sup.worker_pids()
    os.kill(sup.pid, signal.SIGKILL)
    sup.proc.wait(10)
    sup.kill_group()
    wait_for(lambda: not any(alive(p) for p in workers), 10, "the killed workers to exit")


def _succeeded(app: litejobs.App, ids: list[int]) -> int:
    return sum(1 for i in ids if (j := app.get_job(i)) is not None
               and j.state is State.SUCCEEDED)


def test_kill_9_right_after_a_step_success_loses_no_step_and_runs_downstream_once(
        h: Harness) -> None:
    seed = int(os.environ.get("LITEJOBS_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun with LITEJOBS_TEST_SEED={seed})")
    rng = random.Random(seed)
    path = str(h.log)
    for rnd in range(4):
        n = rng.randint(1, 4)
        k = rng.randint(1, n)  # kill once k of the n upstream steps succeeded
        spin = rng.uniform(0, 0.003)
        flow = h.app.workflow(f"kill-{rnd}")
        ups = [flow.add(h.t["step"].prepare(path, [rnd, i], rng.uniform(0, 0.05)))
               for i in range(n)]
        # the fan-in takes a while: if it starts before the kill, it cannot end before it
        fan = flow.add(h.t["fan_in"].prepare(path, 0.3), after=ups)
        after = flow.add(h.t["step"].prepare(path, "after"), after=[fan])
        run = flow.enqueue()
        ids = [h.job(s.id).id for s in ups]
        sup = h.start(workers=2)
        deadline = time.monotonic() + 30
        while _succeeded(h.app, ids) < k:  # no sleep: kill as soon as it is in the file
            assert time.monotonic() < deadline, h.details()
        end = time.monotonic() + spin
        while time.monotonic() < end:
            pass
        kill_9(sup)
        at_kill = {s.id: h.job(s.id).state.value for s in (*ups, fan, after)}
        print(f"round {rnd}: {n} upstream, killed after {k} succeeded (+{spin * 1000:.1f} ms):"
              f" {at_kill}")
        assert list(at_kill.values()).count("succeeded") >= k
        h.start(workers=2)
        h.wait_run(run)
        assert run.result(timeout=1) == "after"
        assert h.job(fan.id).result(0) == [[rnd, i] for i in range(n)]
        for s in ups:
            assert h.events("end", s.id), f"step {s.id} succeeded without running"
        assert len(h.events("end", fan.id)) == 1, h.events("start", fan.id)
        assert len(h.events("end", after.id)) == 1
        assert len(run.jobs()) == n + 2
        if at_kill[fan.id] == "waiting":
            assert len(h.events("start", fan.id)) == 1  # ran once, after the restart
        for sup in h.sups:
            sup.kill_group()


def test_kill_9_right_after_a_then_success_loses_no_child_and_makes_none_twice(
        h: Harness) -> None:
    # The success of a task that returned litejobs.then writes its children and continuation
    # in the same transaction: killed right after it, the restart runs each of them, once.
    seed = int(os.environ.get("LITEJOBS_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (rerun with LITEJOBS_TEST_SEED={seed})")
    rng = random.Random(seed)
    path = str(h.log)
    for rnd in range(3):
        n = rng.randint(1, 6)
        spin = rng.uniform(0, 0.003)
        # the continuation takes a while: if it starts before the kill, it cannot end before
        parent = h.t["split"].enqueue(path, n, 0.3)
        sup = h.start(workers=2)
        deadline = time.monotonic() + 30
        while parent.refresh().state is not State.SUCCEEDED:  # no sleep: kill at once
            assert time.monotonic() < deadline, h.details()
        end = time.monotonic() + spin
        while time.monotonic() < end:
            pass
        kill_9(sup)
        workflow = parent.refresh().workflow
        assert workflow is not None
        at_kill = sorted((j.id, j.state.value) for j in h.app.jobs(workflow=workflow))
        print(f"round {rnd}: {n} children, killed +{spin * 1000:.1f} ms after the parent's "
              f"success: {at_kill}")
        assert len(at_kill) == 1 + n + 1  # written with the success, all of them
        h.start(workers=2)
        assert parent.result(timeout=60) == list(range(n))
        jobs = h.app.jobs(workflow=workflow)
        assert len(jobs) == 1 + n + 1  # no second set of children
        assert len(h.events("start", parent.id)) == 1  # the parent never ran again
        (cont,) = [j for j in jobs if j.task == "wf.fan_in"]
        assert len(h.events("end", cont.id)) == 1
        for j in jobs:
            assert j.state is State.SUCCEEDED, (j.id, j.state, j.error)
            if j.task == "wf.step":
                assert h.events("end", j.id), f"child {j.id} succeeded without running"
        for s in h.sups:
            s.kill_group()
