"""Workflows: graphs of steps written in one transaction, tokens, continuations.

    flow = app.workflow(name="import-42")
    a = flow.add(fetch.prepare(url))
    b = flow.add(resize.prepare(), after=[a])      # starts once `a` succeeded
    run = flow.enqueue()                           # every step, one transaction

A step with upstream steps is ``waiting``; the transaction that records the success of its
last upstream step makes it ``queued`` (schema trigger ``jobs_fan_in``), and a failed or
cancelled step cancels what waits on it (``jobs_cascade``). Nothing polls, nothing counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from litejobs.errors import JobCancelled, JobFailed
from litejobs.newjob import NewJob
from litejobs.serialization import encode, why_not_json
from litejobs.task import Prepared
from litejobs.validate import INT64_MAX, check_int, check_name, check_seconds

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.job import Job
    from litejobs.store.flows import StepRow

__all__ = ["Step", "Then", "Token", "Workflow", "WorkflowRun", "chain", "chord", "group",
           "then"]


@dataclass(frozen=True, slots=True)
class Token:
    """A waitpoint: steps may wait on it (``after=[token]``) until
    ``app.complete_token(token.id, data=...)``; its data is what they see as its result. Made
    by ``app.create_token(timeout=...)``; not completed in time, it fails and what waits on it
    is cancelled."""

    id: int


@dataclass(eq=False, slots=True)
class Step:
    """A step of a workflow being built (``flow.add``); ``id`` is its job's id once the
    workflow is enqueued."""

    flow: Workflow
    index: int
    call: Prepared | Token
    after: tuple[Step | Token, ...]
    id: int | None = None

    def __repr__(self) -> str:
        return f"<Step {self.index} of {self.flow.name or 'workflow'}>"


@dataclass(frozen=True, slots=True)
class Then:
    """What a task returns to end ``succeeded`` and continue: ``children`` run (at once, in
    parallel), then ``continuation`` with their results (``current_job().results()``). The
    task's ``job.result()`` is the continuation's. See ``litejobs.then``."""

    children: tuple[Prepared, ...]
    continuation: Prepared


def then(children: Iterable[Prepared], continuation: Prepared) -> Then:
    """Return this from a task: its ``children`` and then its ``continuation`` (waiting on
    all of them) are written with its success; no worker waits meanwhile."""
    kids = tuple(children)
    for p in (*kids, continuation):
        if not isinstance(p, Prepared):
            raise TypeError(f"litejobs.then takes task.prepare(...) values, not {p!r}")
    return Then(kids, continuation)


class Workflow:
    """A graph of steps built in memory; ``enqueue()`` writes it all in one transaction."""

    def __init__(self, app: App | None = None, name: str | None = None) -> None:
        if name is not None:
            check_name("workflow name", name)
        self.app = app
        self.name = name
        self.steps: list[Step] = []
        self.run: WorkflowRun | None = None

    def __repr__(self) -> str:
        return f"<Workflow {self.name or ''} {len(self.steps)} steps>"

    def add(self, call: Prepared | Token,
            after: Sequence[Step | Token] | Step | Token = ()) -> Step:
        """Add a step: ``call`` (``task.prepare(...)``, or a token) starts once every step and
        token in ``after`` has succeeded. Returns the step, for other steps' ``after``."""
        if self.run is not None:
            raise RuntimeError("this workflow was already enqueued; build a new one")
        if not isinstance(call, Prepared | Token):
            raise TypeError(f"flow.add takes task.prepare(...) or a token, not {call!r}")
        deps = (after,) if isinstance(after, Step | Token) else tuple(after)
        for dep in deps:
            if isinstance(dep, Step):
                if dep.flow is not self:
                    raise ValueError(f"{dep!r} belongs to another workflow; a step waits only "
                                     "on steps of its own workflow (or on tokens)")
            elif not isinstance(dep, Token):
                raise TypeError(f"after takes steps of this workflow and tokens, not {dep!r}")
        if isinstance(call, Token) and deps:
            raise ValueError("a token cannot wait on steps: it waits from its creation until "
                             "app.complete_token(); put the steps that need it after it")
        step = Step(self, len(self.steps), call, deps)
        self.steps.append(step)
        return step

    def enqueue(self, app: App | None = None) -> WorkflowRun:
        """Write every step in one transaction; returns the run. Bad input (a step's options,
        a failed token) raises before anything is written."""
        if self.run is not None:
            raise RuntimeError("this workflow was already enqueued; build a new one")
        app = app or self.app or next((s.call.app for s in self.steps
                                       if isinstance(s.call, Prepared) and s.call.app), None)
        if app is None:
            raise ValueError("no app to enqueue to: build it with app.workflow(), or call "
                             "enqueue(app)")
        rows = [s for s in self.steps if isinstance(s.call, Prepared)]
        if not rows:
            raise ValueError("a workflow needs at least one step: flow.add(task.prepare(...))")
        now = app.clock()  # a test's Clock, when one drives the app
        run_id, ids = app.store.write_run(self.name, self._rows(app, rows, now), now)
        for step, job_id in zip(rows, ids, strict=True):
            step.id = job_id
        for step in self.steps:
            if isinstance(step.call, Token):
                step.id = step.call.id
        app.ring(b"e")
        self.run = WorkflowRun(app, run_id, self.name)
        return self.run

    def _rows(self, app: App, rows: list[Step], now: float) -> list[StepRow]:
        from litejobs.store.flows import StepRow

        where = {id(s): i for i, s in enumerate(rows)}
        out: list[StepRow] = []
        for i, step in enumerate(rows):
            call = step.call
            assert isinstance(call, Prepared)
            after: list[tuple[str, int]] = []
            for dep in step.after:
                if isinstance(dep, Token):
                    after.append(("token", dep.id))
                elif isinstance(dep.call, Token):
                    after.append(("token", dep.call.id))
                else:
                    after.append(("step", where[id(dep)]))
            job, delay = step_job(app, call, now, f"step {i} ({call.task})")
            out.append(StepRow(job, after, delay))
        return out


def step_job(app: App, call: Prepared, now: float, what: str,
             ) -> tuple[NewJob, float | None]:
    """A step's job, validated, and its delay apart (0 without one): the store counts it from
    when the step is written, or ready when it has upstream steps, on the clock of whoever
    writes that (so ``litejobs.testing.Clock`` holds for steps too). None for a step given an
    absolute ``run_at``, which stays as it is."""
    o = call.options
    if o.key is not None or o.debounce is not None or (
            call.defaults is not None and call.defaults.unique_for is not None):
        raise ValueError(f"{what}: a workflow step cannot have a key, unique_for or debounce "
                         "(another job would stand in for it in the graph); enqueue it alone")
    delay = None
    if o.run_at is None:
        delay = 0.0
        if o.delay is not None:  # (a call without options keeps build_job's fast path)
            delay = check_seconds("delay", o.delay)
            call = replace(call, options=replace(o, delay=None))
    try:
        return app.build_job(call, now), delay
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from None


def chain(*calls: Prepared) -> Workflow:
    """A workflow where each call starts after the previous one succeeded."""
    flow = Workflow()
    prev: Step | None = None
    for p in calls:
        prev = flow.add(p, after=[prev] if prev else [])
    return flow


def group(calls: Iterable[Prepared]) -> Workflow:
    """A workflow of calls that all start at once."""
    flow = Workflow()
    for p in calls:
        flow.add(p)
    return flow


def chord(calls: Iterable[Prepared], then: Prepared) -> Workflow:
    """A workflow where ``then`` starts once every one of ``calls`` succeeded, with their
    results (``current_job().results()``)."""
    flow = Workflow()
    steps = [flow.add(p) for p in calls]
    flow.add(then, after=steps)
    return flow


@dataclass(slots=True)
class WorkflowRun:
    """An enqueued workflow. ``state`` reads it now: running, succeeded, failed (a step failed
    or was cancelled), or cancelled (``cancel()``)."""

    app: App = field(repr=False)
    id: int
    name: str | None = None

    @property
    def state(self) -> str:
        row = self.app.store.run(self.id)
        if row is None:
            raise LookupError(f"workflow {self.id} no longer exists (its steps were pruned)")
        return str(row["state"])

    def counts(self) -> dict[str, int]:
        """Its steps' count by state."""
        row = self.app.store.run(self.id)
        return {} if row is None else dict(row["counts"])

    def jobs(self) -> list[Job]:
        """Every step's job (tokens and continuations included), in the order written."""
        return list(reversed(self.app.jobs(workflow=self.id, limit=1_000_000)))

    def cancel(self) -> int:
        """Cancel every step not yet ended (running ones are stopped); returns how many."""
        from litejobs.store.flows import RUN_CANCELLED

        ids = self.app.store.cancel_run(self.id, RUN_CANCELLED, self.app.clock())
        self.app.ring(b"c")
        return len(ids)

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the run ends; the result of its last step (the steps nothing waits
        on: a list of their results when there are several, in step order). Raises
        ``JobFailed`` for the first failed step, ``JobCancelled`` when it was cancelled, and
        ``TimeoutError`` when ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        store = self.app.store
        while True:
            row = store.run(self.id)
            if row is None:
                raise LookupError(f"workflow {self.id} no longer exists (pruned)")
            state = row["state"]
            if state in ("failed", "cancelled"):
                jobs = self.jobs()
                for j in jobs:
                    if j.state.value == "failed":
                        raise JobFailed(j.id, j.error)
                bad = next((j for j in jobs if j.state.value == "cancelled"), None)
                raise JobCancelled(bad.id if bad else self.id, bad.error if bad else state)
            if state == "succeeded":
                values = []
                for sink in store.run_sinks(self.id):
                    job = self.app.get_job(sink)
                    values.append(None if job is None else job.result(0))
                return values[0] if len(values) == 1 else values
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"workflow {self.id} is still {state} after {timeout} "
                                       f"s; see `litejobs jobs --workflow {self.id}`")
                pause = min(pause, left)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def then_jobs(app: App, value: Then, now: float,
              ) -> tuple[list[tuple[NewJob, float | None]], tuple[NewJob, float | None]]:
    """A ``Then``'s children and continuation as jobs with their delays, validated (what the
    worker sends: ``protocol.outcome_then``). Raises TypeError/ValueError for a bad call."""
    kids = [step_job(app, p, now, f"litejobs.then child {i} ({p.task})")
            for i, p in enumerate(value.children)]
    cont = step_job(app, value.continuation, now,
                    f"litejobs.then continuation ({value.continuation.task})")
    return kids, cont


def token_data(data: Any, max_payload: int) -> str:
    """A token's data as stored JSON; TypeError/ValueError when it cannot be."""
    problem = why_not_json(data)
    if problem is not None:
        raise TypeError(f"token data must be JSON values: {problem}")
    text = encode(data)
    if len(text.encode()) > max_payload:
        raise ValueError(f"token data takes {len(text.encode())} bytes as JSON, over "
                         f"max_payload ({max_payload}); store it elsewhere and pass where")
    return text


# --- the App's workflow and token methods (App.workflow etc. are these functions) ------------


def new_workflow(app: App, name: str | None = None) -> Workflow:
    """A new workflow to build (``flow.add``) and enqueue in one transaction."""
    return Workflow(app, name)


def get_workflow(app: App, run_id: int) -> WorkflowRun | None:
    """The enqueued workflow with this id (``run.id``), or None when there is none."""
    run_id = int(run_id)
    row = app.store.run(run_id) if 0 < run_id <= INT64_MAX else None
    return None if row is None else WorkflowRun(app, run_id, row["name"])


def create_token(app: App, timeout: float | None = None) -> Token:
    """A token steps may wait on until ``complete_token``; not completed within ``timeout``
    seconds (None: no limit) it fails, cancelling what waits on it."""
    if timeout is not None:
        timeout = check_seconds("timeout", timeout, allow_zero=False)
    return Token(app.store.create_token(timeout, app.clock()))


def complete_token(app: App, token_id: int | Token, data: Any = None) -> None:
    """Complete a token once; ``data`` (JSON) is the result the steps after it see. Raises
    ValueError when it was already completed, failed, or is not a token."""
    token = token_id.id if isinstance(token_id, Token) else check_int("token", token_id, 1)
    problem = app.store.complete_token(token, token_data(data, app.max_payload), app.clock())
    if problem is not None:
        raise ValueError(problem)
    app.ring(b"e")
