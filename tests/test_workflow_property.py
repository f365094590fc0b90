"""Property tests of workflows (issue 12): random graphs of up to 50 steps with random failures,
retries, tokens, continuations and (in the second test) supervisor kills.

What must hold, checked against what the tasks themselves logged (``tests.apps.propapp``: one
``O_APPEND`` line per start, success and failure, in the order they happened):

- a step never starts before every step it waits on has succeeded (its start line comes after
  the success line of the upstream attempt the database recorded, and the upstream results it
  was given are exactly theirs); a step that is waiting, or was cancelled by an upstream
  step, never started;
- a step runs once it may: once idle, the state of every step is what a model of the graph
  says (succeeded, failed, cancelled downstream of a failure, waiting only behind a token not
  yet completed); nothing is queued, scheduled or running, and nothing waits for ever;
- a fan-in runs exactly once: each succeeded step has exactly one success line for the attempt
  recorded (under kill -9 an attempt whose success was not recorded yet may run again: that is
  at-least-once; without kills there is no second run at all), and every continuation and child
  exists once;
- after fixing the failing tasks and retrying the failed steps (and completing the tokens left
  open) the run resumes and ends as the model says, steps that had succeeded not run again.

The in-process test is a hypothesis property (also: steps cancelled by hand at random moments,
then retried); the other runs random graphs under `litejobs run` processes kill -9ed while
steps run, with their kill moments from ``random.Random(seed)``. Both print the seed;
``LITEJOBS_PROP_SEED=N`` replays it, ``LITEJOBS_PROP_EXAMPLES=N`` (default 80) runs N
hypothesis examples and N/16 graphs under kills, for a longer soak.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import litejobs
from litejobs import State
from litejobs.testing import Clock, run_until_idle
from litejobs.workflows import Step, Token, WorkflowRun
from tests.apps import propapp
from tests.conftest import REPO, SupervisorProcess, launch_supervisor, wait_for

SEED = int(os.environ.get("LITEJOBS_PROP_SEED") or random.randrange(2**32))
EXAMPLES = int(os.environ.get("LITEJOBS_PROP_EXAMPLES") or 80)  # more for a soak run
GRAPHS = max(1, EXAMPLES // 16)  # under supervisors killed

pytestmark = pytest.mark.timeout(max(180, 30 * GRAPHS))
FATES = ("pre", "mid", "expire", "late")  # a token: completed before enqueue, while it runs,
#                                           never (it times out), or only after the retries
KINDS = ("plain", "plain", "plain", "flaky", "delayed", "fanout")
ENDED = ("succeeded", "failed", "cancelled")
CANCEL_REASON = re.compile(r"upstream step (\d+) (failed|cancelled)")
_SHOWN: list[int] = []


# --- graphs and the model of how they end ------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    after: tuple[tuple[str, int], ...]  # ("step", earlier index) or ("token", token index)
    kind: str  # plain, flaky (attempt 1 fails, retried), delayed, fanout (litejobs.then)
    kids: int = 0  # a fanout's children
    fail: str | None = None  # which part fails until fixed: "" (the step), ".c0", ".join"
    sleep: float = 0.0


@dataclass(frozen=True)
class Graph:
    steps: tuple[StepSpec, ...]
    tokens: tuple[str, ...]  # each token's fate (FATES)

    def failing(self) -> set[str]:
        """Names of the tasks that fail until fixed (the marker files to write)."""
        return {f"s{i}{s.fail}" for i, s in enumerate(self.steps) if s.fail is not None}

    def used_tokens(self) -> set[int]:
        return {k for s in self.steps for kind, k in s.after if kind == "token"}


def build_graph(pick: Callable[[int, int], int], max_steps: int,
                sleeps: Sequence[float] = (0.0,), min_steps: int = 1) -> Graph:
    """A random graph from ``pick(lo, hi)`` (an integer in [lo, hi]): hypothesis draws or a
    seeded random.Random, so both tests share one generator."""
    tokens = tuple(FATES[pick(0, len(FATES) - 1)] for _ in range(pick(0, 3)))
    steps = []
    for i in range(pick(min_steps, max_steps)):
        ups: list[tuple[str, int]] = []
        for _ in range(pick(0, min(i, 4))):  # (the same step twice now and then)
            ups.append(("step", pick(0, i - 1)))
        if tokens and pick(0, 4) == 0:
            ups.insert(pick(0, len(ups)), ("token", pick(0, len(tokens) - 1)))
        kind = KINDS[pick(0, len(KINDS) - 1)]
        kids = pick(0, 3) if kind == "fanout" else 0
        fail: str | None = None
        if pick(0, 7) == 0:
            parts = ["", ".join"] + ([".c0"] if kids else []) if kind == "fanout" else [""]
            fail = parts[pick(0, len(parts) - 1)]
        sleep = sleeps[pick(0, len(sleeps) - 1)]
        steps.append(StepSpec(tuple(ups), kind, kids, fail, sleep))
    return Graph(tuple(steps), tokens)


@st.composite
def graphs(draw: st.DrawFn, max_steps: int = 50) -> Graph:
    return build_graph(lambda lo, hi: draw(st.integers(lo, hi)), max_steps)


def model(graph: Graph, failing: set[str], tokens: dict[int, str],
          cancelled: AbstractSet[str] = frozenset()) -> dict[str, str]:
    """The state every job of the run must be in once idle: ``{name: state}``. Steps are
    ``s<i>``, a fanout's children ``s<i>.c<j>`` and continuation ``s<i>.join`` (present once
    the fanout succeeded), tokens ``t<k>`` (those some step waits on). ``cancelled``: steps
    cancelled by hand before they ended."""
    out = {f"t{k}": tokens[k] for k in graph.used_tokens()}
    seen: list[str] = []  # what the steps after each one see: a fanout's is its join's
    for i, spec in enumerate(graph.steps):
        ups = [seen[ref] if kind == "step" else tokens[ref] for kind, ref in spec.after]
        name = f"s{i}"
        if name in cancelled or any(u in ("failed", "cancelled") for u in ups):
            state = out[name] = "cancelled"
        elif "waiting" in ups:
            state = out[name] = "waiting"
        elif name in failing:
            state = out[name] = "failed"
        else:
            state = out[name] = "succeeded"
            if spec.kind == "fanout":
                kids = [f"{name}.c{j}" for j in range(spec.kids)]
                for kid in kids:
                    out[kid] = "failed" if kid in failing else "succeeded"
                if any(out[k] == "failed" for k in kids):
                    state = "cancelled"
                elif f"{name}.join" in failing:
                    state = "failed"
                out[f"{name}.join"] = state
        seen.append(state)
    return out


def run_state(expect: dict[str, str]) -> str:
    states = set(expect.values())
    if states & {"failed", "cancelled"}:
        return "failed"
    return "succeeded" if states == {"succeeded"} else "running"


def value_of(name: str) -> str:
    """What a job's downstream steps see as its result (a token's data is its name)."""
    return name[: -len(".join")] if name.endswith(".join") else name


# --- one run: building it, reading it, checking it --------------------------------------------


class Harness:
    """A graph enqueued on one database, its tokens, marker files and the tasks' log."""

    def __init__(self, folder: Path, graph: Graph) -> None:
        self.folder = folder
        self.graph = graph
        self.app = propapp.make_app(folder / "jobs.db")
        self.step_task = self.app.tasks["prop.step"]
        self.fanout_task = self.app.tasks["prop.fanout"]
        self.tokens: dict[int, Token] = {}
        self.token_state: dict[int, str] = {}
        self.run: WorkflowRun | None = None
        self.steps: list[Step] = []
        self.cancelled: set[str] = set()  # steps cancelled by hand before they ended
        for name in graph.failing():
            (folder / f"fail-{name}").touch()

    def make_tokens(self, expire_after: Callable[[], float]) -> None:
        for k, fate in enumerate(self.graph.tokens):
            self.tokens[k] = self.app.create_token(
                timeout=expire_after() if fate == "expire" else 10_000_000)
            self.token_state[k] = "waiting"
            if fate == "pre":
                self.complete(k)

    def complete(self, k: int) -> None:
        self.app.complete_token(self.tokens[k], data=f"t{k}")
        self.token_state[k] = "succeeded"

    def enqueue(self) -> WorkflowRun:
        flow = self.app.workflow(f"prop-{SEED}")
        steps: list[Step] = []
        for i, spec in enumerate(self.graph.steps):
            after = [steps[ref] if kind == "step" else self.tokens[ref]
                     for kind, ref in spec.after]
            folder, name, flaky = str(self.folder), f"s{i}", spec.kind == "flaky"
            if spec.kind == "fanout":
                call = self.fanout_task.prepare(folder, name, spec.kids, sleep=spec.sleep)
            elif spec.kind == "delayed":
                call = self.step_task.options(delay=0.05).prepare(folder, name, name,
                                                                   sleep=spec.sleep)
            else:
                call = self.step_task.prepare(folder, name, name, flaky=flaky, sleep=spec.sleep)
            steps.append(flow.add(call, after=after))
        self.run = flow.enqueue()
        self.steps = steps
        return self.run

    def cancel(self, i: int) -> None:
        """Cancel step ``i`` by hand (if it has not ended)."""
        job = self.app.get_job(self.steps[i].id or 0)
        assert job is not None
        if job.cancel():
            self.cancelled.add(f"s{i}")

    def fix(self) -> None:
        for name in self.graph.failing():
            (self.folder / f"fail-{name}").unlink(missing_ok=True)

    def records(self) -> list[dict[str, Any]]:
        try:
            text = (self.folder / "log").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n")]

    def jobs(self) -> dict[str, litejobs.Job]:
        """The run's jobs by name; fails on a name seen twice (a child or a continuation
        written twice, a fan-in fired twice)."""
        assert self.run is not None
        names = {t.id: f"t{k}" for k, t in self.tokens.items()}
        out: dict[str, litejobs.Job] = {}
        for job in self.run.jobs():
            name = names.get(job.id) or str(job.args[1])
            assert name not in out, f"two jobs for {name}: {out[name].id} and {job.id}"
            out[name] = job
        return out

    def pending(self) -> bool:
        """Whether a job of the run is still to run (queued, scheduled or running)."""
        assert self.run is not None
        counts = self.run.counts()
        return any(counts.get(s) for s in ("queued", "scheduled", "running"))

    def check(self, expect: dict[str, str], *, killed: bool,
              retried: bool = False) -> dict[str, litejobs.Job]:
        """Every invariant of the module docstring, once the run is idle; returns its jobs.
        ``killed``: supervisors were killed, so an unrecorded attempt may have run again;
        ``retried``: failed steps were retried."""
        assert self.run is not None
        jobs = self.jobs()
        got = {name: job.state.value for name, job in jobs.items()}
        wrong = {n: (got.get(n), expect.get(n)) for n in set(got) | set(expect)
                 if got.get(n) != expect.get(n)}
        assert not wrong, f"(got, expected) states: {wrong}\nerrors: " + repr(
            {n: jobs[n].error for n in wrong if n in jobs})
        assert self.run.state == run_state(expect)
        by_id = {job.id: (name, job) for name, job in jobs.items()}
        ups = {job.id: self.app.store.upstream_of(job.id) for job in jobs.values()}

        def ancestors(job_id: int) -> set[int]:
            out: set[int] = set()
            todo = list(ups[job_id])
            while todo:
                u = todo.pop()
                if u not in out:
                    out.add(u)
                    todo.extend(ups[u])
            return out

        for name, job in jobs.items():
            states = [by_id[u][1].state.value for u in ups[job.id]]
            if job.state is State.WAITING and not name.startswith("t"):
                # waits only while an upstream step has not ended (behind an open token)
                assert not {"failed", "cancelled"} & set(states), (name, states)
                assert "waiting" in states, (name, states)
            if job.state is State.CANCELLED and name in self.cancelled:
                assert job.error == "cancelled", (name, job.error)
            elif job.state is State.CANCELLED:
                m = CANCEL_REASON.fullmatch(job.error or "")
                assert m is not None, (name, job.error)
                assert {"failed", "cancelled"} & set(states), (name, job.error, states)
                if not retried:  # (a retry may leave the reason naming a step now fixed)
                    assert int(m[1]) in ancestors(job.id), (name, job.error)
                    assert by_id[int(m[1])][1].state.value == m[2], (name, job.error)
            if job.state in (State.SUCCEEDED, State.FAILED) and not name.startswith("t"):
                assert set(states) <= {"succeeded"}, (name, states)

        records = self.records()
        oks: dict[tuple[int, int], int] = {}
        for at, r in enumerate(records):
            if r["event"] == "ok":
                oks.setdefault((r["id"], r["attempt"]), at)
        for at, r in enumerate(records):
            if r["event"] != "start" or r["id"] not in by_id:
                continue
            name, job = by_id[r["id"]]
            if name not in self.cancelled:  # (cancelled by hand in a retry's back-off)
                assert job.state not in (State.WAITING, State.CANCELLED), (
                    f"{name} ({job.state.value}) started: {r}")
            want = [value_of(by_id[u][0]) for u in ups[job.id]]
            assert r["results"] == want, f"{name} attempt {r['attempt']} saw {r['results']}"
            for u in ups[job.id]:
                up_name, up = by_id[u]
                if up_name.startswith("t"):
                    continue  # a token's data in the results shows it was completed
                done = oks.get((u, up.attempt))
                assert done is not None and done < at, (
                    f"{name} started (line {at}) before {up_name} attempt {up.attempt} "
                    f"succeeded (line {done})")
        for name, job in jobs.items():
            if name.startswith("t"):
                continue
            mine = [r for r in records if r["id"] == job.id]
            recorded = [r for r in mine if r["event"] == "ok" and r["attempt"] == job.attempt]
            assert len(recorded) == (job.state is State.SUCCEEDED), (name, job.state, mine)
            if not killed:  # no attempt was lost: one start per attempt, one success at most
                assert [r["attempt"] for r in mine if r["event"] == "start"] == list(
                    range(1, job.attempt + 1)), (name, mine)
                assert sum(r["event"] == "ok" for r in mine) == len(recorded), (name, mine)
        return jobs

    def check_retries_refused(self, jobs: dict[str, litejobs.Job]) -> None:
        """A cancelled step waits on one that has not succeeded, and a token is not retried:
        both are refused, and nothing changes."""
        for name, job in jobs.items():
            if (job.state is State.CANCELLED and CANCEL_REASON.fullmatch(job.error or "")) or (
                    name.startswith("t") and job.state is State.FAILED):
                with pytest.raises(ValueError, match=r"waits on step|is a token"):
                    job.retry()
                assert job.refresh().state in (State.CANCELLED, State.FAILED)


def check_cancelled_run(h: Harness, lines: int, ended: dict[str, str], was: str,
                        count: int) -> None:
    """After ``run.cancel()`` (which cancelled ``count`` steps of a run that was ``was``):
    the run is cancelled (unchanged when it had ended), none of its steps is left to run or
    waits, what had ended is as it was, the rest is cancelled, and nothing started since."""
    assert h.run is not None
    assert h.run.state == ("cancelled" if count else was), (h.run.state, was, count)
    assert not h.pending()
    jobs = h.jobs()
    for name, job in jobs.items():
        if name in ended:
            assert job.state.value == ended[name], (name, job.state, ended[name])
        elif not name.startswith("t"):  # (tokens are not cancelled: see above)
            assert job.state is State.CANCELLED, (name, job.state)
            assert job.error == "cancelled (workflow cancelled)" or CANCEL_REASON.fullmatch(
                job.error or ""), (name, job.error)
    assert [r for r in h.records()[lines:] if r["event"] == "start"] == []


# --- in process: hypothesis --------------------------------------------------------------------


def some(h: Harness, clock: Clock, attempts: int | None) -> None:
    """Run ``attempts`` attempts of what is due (None: everything, until idle)."""
    if attempts is None:
        drain(h, clock)
    elif attempts:
        run_until_idle(h.app, clock=clock, max_jobs=attempts)


def drain(h: Harness, clock: Clock) -> None:
    """Run everything due, moving the clock on for back-offs and delays, until idle."""
    for _ in range(10_000):
        report = run_until_idle(h.app, clock=clock)
        if not report.succeeded and not report.failed and not h.pending():
            return
        clock.advance(0.1)
    pytest.fail("the run never became idle")


@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@hypothesis_seed(SEED)
@given(graph=graphs(), data=st.data())
def test_random_workflows_in_process(graph: Graph, data: st.DataObject) -> None:
    if not _SHOWN:  # once, not at every example
        _SHOWN.append(SEED)
        print(f"seed={SEED} (replay: LITEJOBS_PROP_SEED={SEED})")
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(Path(tmp), graph)
        clock = Clock(time.time() + 60)  # ahead of the real time enqueue and retry stamp
        h.make_tokens(lambda: 5000)
        h.enqueue()
        # the tokens completed while it runs, the timeouts and a few cancels, in a drawn
        # order, with some or all of what is due run between them
        cancels = [f"c{data.draw(st.integers(0, len(graph.steps) - 1))}"
                   for _ in range(data.draw(st.integers(0, 2)))]
        if data.draw(st.integers(0, 7)) == 0:
            cancels.append("run")  # run.cancel(): checked apart, the example ends there
        mid = [str(k) for k in h.tokens if graph.tokens[k] == "mid"]
        cancelled_run: tuple[int, dict[str, str], str, int] | None = None
        for event in data.draw(st.permutations([*mid, "expire", *cancels])):
            some(h, clock, data.draw(st.sampled_from((0, 1, 3, 10, None))))
            if event == "run":
                ended: dict[str, str] = {n: j.state.value for n, j in h.jobs().items()
                                         if j.state.value in ENDED}
                assert h.run is not None
                was = h.run.state
                cancelled_run = (len(h.records()), ended, was, h.run.cancel())
            elif event == "expire":
                clock.advance(6000)
                for k, fate in enumerate(graph.tokens):
                    if fate == "expire" and not cancelled_run:
                        h.token_state[k] = "failed"
            elif event.startswith("c"):
                h.cancel(int(event[1:]))
            else:  # (a token outlives a cancelled run: another run may wait on it too)
                h.complete(int(event))
        if cancelled_run is not None:
            drain(h, clock)
            check_cancelled_run(h, *cancelled_run)
            return
        drain(h, clock)
        jobs = h.check(model(graph, graph.failing(), h.token_state, h.cancelled),
                       killed=False)
        h.check_retries_refused(jobs)
        before = {name: len([r for r in h.records() if r["id"] == job.id])
                  for name, job in jobs.items() if job.state is State.SUCCEEDED}

        # fixed: retry what failed, complete the tokens left open, in a drawn order
        h.fix()
        failed = [name for name, job in jobs.items()
                  if job.state is State.FAILED and not name.startswith("t")]
        late = [f"t{k}" for k in h.tokens if graph.tokens[k] == "late"]
        for name in data.draw(st.permutations(failed + late)):
            if name.startswith("t"):
                h.complete(int(name[1:]))
            else:
                assert jobs[name].retry(retries=1), name  # (a flaky step needs one)
            some(h, clock, data.draw(st.sampled_from((0, 1, 3, None))))
        drain(h, clock)
        # the steps cancelled by hand, upstream first: refused while an upstream step has
        # not succeeded (behind a token that timed out)
        expect = model(graph, set(), h.token_state)
        for name in sorted(h.cancelled, key=lambda n: int(n[1:])):
            blocked = [u for u in h.app.store.upstream_of(jobs[name].id)
                       if getattr(h.app.get_job(u), "state", None) is not State.SUCCEEDED]
            if blocked:
                with pytest.raises(ValueError, match=r"waits on step"):
                    jobs[name].retry()
                assert expect[name] == "cancelled"
            else:
                assert jobs[name].retry(retries=1), name  # (a flaky step needs one)
                drain(h, clock)
        jobs = h.check(expect, killed=False, retried=True)
        for name, n in before.items():
            assert len([r for r in h.records() if r["id"] == jobs[name].id]) == n, (
                f"{name} ran again after it had succeeded")


# --- real supervisors, killed at random moments -----------------------------------------------


class Supervisors:
    """`litejobs run` processes on the harness's database (one, or two side by side)."""

    def __init__(self, folder: Path, db: Path) -> None:
        self.folder = folder
        self.db = db
        self.all: list[SupervisorProcess] = []
        self.live: list[SupervisorProcess] = []
        self.cfg = folder / "litejobs.toml"
        # lease 2 s: rescue of a killed supervisor's jobs is at once anyway (its pid is gone);
        # crash_limit high: a kill counts as a crash, and the model has no crash failures
        self.cfg.write_text(f'app = "tests.apps.propapp:app"\ndatabase = "{db}"\n'
                            'lease = 2\ncrash_limit = 1000\n')

    def start(self) -> SupervisorProcess:
        cmd = [sys.executable, "-m", "litejobs", "run", "--config", str(self.cfg),
               "--workers", "2"]
        sup = launch_supervisor(cmd, REPO, self.db,
                                self.folder / f"supervisor-{len(self.all)}.log")
        self.all.append(sup)
        self.live.append(sup)
        return sup

    def kill(self, which: int, whole_group: bool) -> None:
        """kill -9 a live supervisor (alone: its workers notice and exit; or with them)."""
        sup = self.live.pop(which % len(self.live))
        if whole_group:
            os.killpg(sup.pid, signal.SIGKILL)
        else:
            os.kill(sup.pid, signal.SIGKILL)
        sup.proc.wait(10)

    def details(self) -> str:
        return "\n".join(f"--- supervisor {i} ---\n{s.output()[-3000:]}"
                         for i, s in enumerate(self.all))

    def stop_all(self) -> None:
        for sup in self.all:
            sup.kill_group()


def run_killed(folder: Path, rng: random.Random) -> str:
    """One random graph under one or two `litejobs run` on its file, kill -9ed at random
    moments while steps run (each killed one replaced); returns a line saying what happened."""
    folder.mkdir()
    graph = build_graph(rng.randint, 40, sleeps=(0.0, 0.01, 0.03, 0.1), min_steps=8)
    h = Harness(folder, graph)
    sups = Supervisors(folder, folder / "jobs.db")
    kills: list[str] = []
    try:
        side_by_side = rng.randint(1, 2)
        for _ in range(side_by_side):
            sups.start()
        h.make_tokens(lambda: rng.uniform(0.5, 2.0))  # (not timed out before the enqueue)
        run = h.enqueue()

        def idle() -> bool:
            expiring = [h.tokens[k].id for k in h.tokens if graph.tokens[k] == "expire"]
            return not h.pending() and all(
                getattr(h.app.get_job(t), "state", None) is State.FAILED for t in expiring)

        def drive(actions: list[Callable[[], None]], kills_left: int) -> None:
            """``actions`` in order, with kill -9s of the supervisor (alone, or with its
            workers) at random moments among them while a step runs, then wait for idle."""
            plan: list[Callable[[], None] | None] = [*actions, *([None] * kills_left)]
            rng.shuffle(plan)
            while plan:
                action = plan.pop(0)
                if action is not None:
                    action()
                    continue
                # a step started under this supervisor (the rows still running may be the
                # killed one's, not yet rescued), or none is left to run
                mark = len(h.records())
                wait_for(lambda: any(r["event"] == "start" for r in h.records()[mark:])
                         or idle(), 60, "a step to start", details=sups.details)
                if idle():
                    continue
                time.sleep(rng.uniform(0.0, 0.12))  # in a step, or just after it
                counts = run.counts()
                kills.append(f"{counts.get('running', 0)}/{sum(counts.values())}")
                sups.kill(rng.randint(0, 1), whole_group=rng.random() < 0.5)
                ahead = plan[0] if plan else None
                if ahead is not None and rng.random() < 0.5:
                    plan.pop(0)
                    ahead()  # a retry or a token's completion while it is down
                sups.start()
            wait_for(idle, 90, "the run to be idle", interval=0.05, details=sups.details)

        mid = [k for k in h.tokens if graph.tokens[k] == "mid"]
        drive([lambda k=k: h.complete(k) for k in mid], rng.randint(2, 5))  # type: ignore[misc]
        for k, fate in enumerate(graph.tokens):
            if fate == "expire":
                h.token_state[k] = "failed"
        jobs = h.check(model(graph, graph.failing(), h.token_state), killed=True)
        h.check_retries_refused(jobs)

        h.fix()
        failed = [job for name, job in jobs.items()
                  if job.state is State.FAILED and not name.startswith("t")]
        late = [k for k in h.tokens if graph.tokens[k] == "late"]
        # retries: a kill under the retried attempt is a crash, which a plain retry() (no
        # retries left) would end failed: legitimate, but not what the model says
        actions: list[Callable[[], None]] = [
            lambda j=j: j.retry(retries=50) and None for j in failed]  # type: ignore[misc]
        actions += [lambda k=k: h.complete(k) for k in late]  # type: ignore[misc]
        drive(actions, rng.randint(1, 3))
        jobs = h.check(model(graph, set(), h.token_state), killed=True, retried=True)
    except BaseException:
        print(sups.details())
        raise
    finally:
        sups.stop_all()
    recorded = {(j.id, j.attempt) for j in jobs.values() if j.state is State.SUCCEEDED}
    lost = sum(r["event"] == "ok" and (r["id"], r["attempt"]) not in recorded
               for r in h.records())
    return (f"{len(graph.steps)} steps, {side_by_side} supervisor(s), {len(jobs)} jobs, "
            f"{len(kills)} kills (running/jobs: "
            f"{' '.join(kills)}), {lost} successes ran again (not yet recorded at a kill)")


def test_random_workflows_under_supervisor_kills(tmp_path: Path) -> None:
    print(f"seed={SEED} (replay: LITEJOBS_PROP_SEED={SEED})")
    rng = random.Random(SEED)
    for n in range(GRAPHS):
        print(f"graph {n}:", run_killed(tmp_path / f"graph-{n}", rng))


# --- found on the way ----------------------------------------------------------------------------


def test_cancel_of_an_ended_run_changes_nothing(tmp_path: Path) -> None:
    app = propapp.make_app(tmp_path / "jobs.db")
    step = app.tasks["prop.step"]
    run = litejobs.chain(step.prepare(str(tmp_path), "a", "a"),
                         step.prepare(str(tmp_path), "b", "b")).enqueue(app)
    run_until_idle(app)
    assert run.state == "succeeded"
    assert run.cancel() == 0  # nothing was left to cancel
    assert run.state == "succeeded"
    assert run.result(timeout=1) == "b"


def test_a_reason_left_after_a_retry_names_what_still_blocks(tmp_path: Path) -> None:
    app = propapp.make_app(tmp_path / "jobs.db")
    step = app.tasks["prop.step"]
    (tmp_path / "fail-a").touch()
    token = app.create_token(timeout=5)
    flow = app.workflow("reason")
    a = flow.add(step.prepare(str(tmp_path), "a", "a"))
    d = flow.add(step.prepare(str(tmp_path), "d", "d"), after=[token, a])
    flow.enqueue()
    clock = Clock(time.time() + 1)
    run_until_idle(app, clock=clock)
    job_a, job_d = app.get_job(a.id or 0), app.get_job(d.id or 0)
    assert job_a is not None and job_d is not None
    assert job_d.state is State.CANCELLED and job_d.error == f"upstream step {a.id} failed"
    clock.advance(60)  # past the token's timeout: it fails too
    run_until_idle(app, clock=clock)
    assert app.get_job(token.id).state is State.FAILED  # type: ignore[union-attr]
    (tmp_path / "fail-a").unlink()
    assert job_a.retry()
    run_until_idle(app, clock=clock)
    assert job_a.refresh().state is State.SUCCEEDED
    assert job_d.refresh().state is State.CANCELLED  # behind the token, which failed
    with pytest.raises(ValueError) as refused:
        job_d.retry()
    assert f"retry {a.id} " not in str(refused.value), str(refused.value)
