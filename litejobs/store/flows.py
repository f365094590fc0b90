"""Workflows in a write transaction: runs, steps and their edges, tokens, continuations.

The fan-in and the cascade are triggers of the schema (``jobs_fan_in``, ``jobs_cascade``): every
path that ends a step (an outcome, a token's completion, a cancel, an expiry, a rescue) does them
in its own transaction. Here: writing a run's steps in one transaction, tokens, a continuation
(``litejobs.then``) written with its parent's success, the retry that revives what a failed
step cancelled, and the reads behind ``WorkflowRun``, ``litejobs workflows`` and ``show``.
``Tx`` takes them from ``WorkflowsTxMixin``; ``runs`` has the reads and the transactions
outside the supervisor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import apsw

from litejobs.newjob import NewJob
from litejobs.store import sql
from litejobs.store.rows import _id_list, _scalar
from litejobs.store.schema import TOKEN_TASK

__all__ = ["RUN_CANCELLED", "StepRow", "WorkflowsTxMixin", "run_state"]

#: The reason of the steps a run's cancel ended (``WorkflowRun.cancel``).
RUN_CANCELLED = "cancelled (workflow cancelled)"

INSERT_WORKFLOW = "INSERT INTO workflows (name, created_at) VALUES (?, ?)"
_NEXT_ID = sql._NEXT_ID  # a new job's id (see sql.INSERT_JOBS)
INSERT_STEP = f"""
INSERT INTO jobs (id, task, queue, state, priority, args, kwargs, run_at, scheduled_at,
                  created_at, max_attempts, timeout, expires_at, concurrency_key,
                  concurrency_limit, tags, workflow, ready_delay, upstream_left, flow_rate,
                  flow_period)
VALUES ({_NEXT_ID} + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_DEP = "INSERT INTO job_deps (job_id, position, upstream) VALUES (?, ?, ?)"
INSERT_TOKEN = f"""
INSERT INTO jobs (id, task, queue, state, args, kwargs, run_at, scheduled_at, created_at,
                  max_attempts, expires_at)
VALUES ({_NEXT_ID} + 1, '{TOKEN_TASK}', 'litejobs', 'waiting', '[]', '{{}}', ?1, ?1, ?1, 1, ?2)
"""
SELECT_TOKEN = "SELECT task, state, workflow, finished_at, error FROM jobs WHERE id = ?"
# A token joins the run of the first workflow that waits on it.
ATTACH_TOKEN = "UPDATE jobs SET workflow = ? WHERE id = ? AND workflow IS NULL"
COMPLETE_TOKEN = f"""
UPDATE jobs SET state = 'succeeded', result = ?, finished_at = ?
WHERE id = ? AND task = '{TOKEN_TASK}' AND state = 'waiting'
"""
EXPIRE_TOKENS = f"""
UPDATE jobs SET state = 'failed', finished_at = ?1,
    error = 'token not completed within its timeout of '
            || printf('%g', expires_at - created_at) || ' s'
WHERE id IN (SELECT id FROM jobs WHERE state = 'waiting' AND expires_at IS NOT NULL
             AND expires_at < ?1 AND task = '{TOKEN_TASK}' LIMIT ?2)
"""
# A continuation: the parent's downstream steps wait on its continuation instead (so they
# see the continuation's result, and start when it has succeeded).
REWIRE = "UPDATE job_deps SET upstream = ? WHERE upstream = ?"
SET_WORKFLOW = "UPDATE jobs SET workflow = ? WHERE id = ? AND workflow IS NULL"
SELECT_RUNNING_STEP = (
    "SELECT workflow, task FROM jobs WHERE id = ? AND attempt = ? AND state = 'running'")
FINISH_CONTINUED = """
UPDATE jobs SET state = 'succeeded', result = NULL, continuation = ?, error = NULL,
                started_at = ?, finished_at = ?, leased_by = ?, lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
# Steps whose upstream steps have not all succeeded: a manual retry must not queue them.
BLOCKED_STEPS = f"""
SELECT j.id, (SELECT u.id FROM job_deps d JOIN jobs u ON u.id = d.upstream
              WHERE d.job_id = j.id AND u.state IN ('failed', 'cancelled')
              ORDER BY d.position LIMIT 1),
       j.task
FROM jobs j
WHERE j.id IN (SELECT value FROM json_each(?)) AND j.workflow IS NOT NULL
  AND j.state IN ('failed', 'cancelled')
  AND (j.task = '{TOKEN_TASK}' OR EXISTS (
      SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
      WHERE d.job_id = j.id AND u.state IN ('failed', 'cancelled')))
"""
# A retried step whose upstream steps have not all succeeded, none failed or cancelled (they
# run, or were retried themselves): it waits for them again (?1: retries, ?2: ids).
WAIT_AGAIN = f"""
UPDATE jobs SET state = 'waiting', max_attempts = attempt - interrupts + ?1, crashes = 0,
    error = NULL, finished_at = NULL, result = NULL, expires_at = NULL,
    upstream_left = (SELECT count(DISTINCT d.upstream) FROM job_deps d
                     JOIN jobs u ON u.id = d.upstream
                     WHERE d.job_id = jobs.id AND u.state != 'succeeded')
WHERE id IN (SELECT value FROM json_each(?2)) AND workflow IS NOT NULL
  AND state IN ('failed', 'cancelled') AND task != '{TOKEN_TASK}'
  AND EXISTS (SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
              WHERE d.job_id = jobs.id AND u.state != 'succeeded')
"""
# What stands first in the way of a step: an upstream step failed or cancelled before one
# that has not ended (the walk to the root of a refused retry follows it).
BLOCKER = """
SELECT u.id, u.state, u.task FROM job_deps d JOIN jobs u ON u.id = d.upstream
WHERE d.job_id = ? AND u.state != 'succeeded'
ORDER BY u.state IN ('failed', 'cancelled') DESC, d.position LIMIT 1
"""
# Steps cancelled by an upstream step (jobs_cascade) or by their run's cancel, downstream of
# the given ones, whose upstream steps are none failed or cancelled any more: back to
# waiting. Run until nothing changes, so each level sees the one above it revived.
REVIVE = f"""
UPDATE jobs SET state = 'waiting', error = NULL, finished_at = NULL,
    upstream_left = (SELECT count(DISTINCT d.upstream) FROM job_deps d
                     JOIN jobs u ON u.id = d.upstream
                     WHERE d.job_id = jobs.id AND u.state != 'succeeded')
WHERE state = 'cancelled' AND (error LIKE 'upstream step % %' OR error = '{RUN_CANCELLED}')
  AND id IN (
    WITH RECURSIVE down (id) AS (
        SELECT d.job_id FROM job_deps d WHERE d.upstream IN (SELECT value FROM json_each(?))
        UNION
        SELECT d.job_id FROM down JOIN job_deps d ON d.upstream = down.id)
    SELECT id FROM down)
  AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
                  WHERE d.job_id = jobs.id AND u.state IN ('failed', 'cancelled'))
"""
RESUME_RUNS = """
UPDATE workflows SET cancelled_at = NULL
WHERE cancelled_at IS NOT NULL AND id IN (
    SELECT workflow FROM jobs WHERE id IN (SELECT value FROM json_each(?))
    AND workflow IS NOT NULL AND state IN ('queued', 'scheduled', 'waiting'))
"""
# The results of claimed steps' upstream steps, in the order of their `after`.
STEP_RESULTS = """
SELECT d.job_id, json_group_array(json(coalesce(u.result, 'null')))
FROM (SELECT job_id, position, upstream FROM job_deps
      WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, position) d
LEFT JOIN jobs u ON u.id = d.upstream
GROUP BY d.job_id
"""
CANCEL_RUN = "UPDATE workflows SET cancelled_at = ? WHERE id = ? AND cancelled_at IS NULL"
# A token is left waiting: another run may wait on it too (what waits on it in this run is
# cancelled anyway).
RUN_PENDING = f"""
SELECT id FROM jobs WHERE workflow = ? AND state IN ('waiting', 'scheduled', 'queued', 'running')
  AND task != '{TOKEN_TASK}'
ORDER BY id
"""
SELECT_RUN = "SELECT id, name, created_at, cancelled_at FROM workflows WHERE id = ?"
RUN_COUNTS = "SELECT state, count(*) AS n FROM jobs WHERE workflow = ? GROUP BY state"
# The steps nothing waits on, each followed to the end of its continuations by the caller.
RUN_SINKS = """
SELECT j.id FROM jobs j
WHERE j.workflow = ? AND j.continuation IS NULL AND j.task != 'litejobs.token'
  AND NOT EXISTS (SELECT 1 FROM job_deps d WHERE d.upstream = j.id)
ORDER BY j.id
"""
UPSTREAM_OF = "SELECT upstream FROM job_deps WHERE job_id = ? ORDER BY position"
DOWNSTREAM_OF = "SELECT job_id FROM job_deps WHERE upstream = ? ORDER BY job_id"
LIST_RUNS = """
SELECT w.id, w.name, w.created_at, w.cancelled_at,
       (SELECT json_group_object(state, n) FROM (
            SELECT state, count(*) AS n FROM jobs WHERE workflow = w.id GROUP BY state))
           AS counts
FROM workflows w ORDER BY w.id DESC LIMIT ?
"""
PRUNE_RUNS = """
DELETE FROM workflows WHERE id IN (
    SELECT w.id FROM workflows w WHERE w.created_at < ?
    AND NOT EXISTS (SELECT 1 FROM jobs WHERE workflow = w.id) LIMIT ?)
"""


@dataclass(slots=True)
class StepRow:
    """One step to write: its job, what it waits on (``("step", index)`` for an earlier step
    of this run, ``("token", id)`` for a token), and its delay, counted from when it is
    written or, with upstream steps, ready (None: its job's run_at is absolute)."""

    job: NewJob
    after: Sequence[tuple[str, int]]
    delay: float | None = None


def run_state(counts: dict[str, int], cancelled: bool) -> str:
    """A run's state from its steps' states: cancelled (run.cancel), failed (a step failed or
    was cancelled), succeeded (every step), or running."""
    if cancelled:
        return "cancelled"
    if counts.get("failed") or counts.get("cancelled"):
        return "failed"
    if counts and set(counts) == {"succeeded"}:
        return "succeeded"
    return "running"


class WorkflowsTxMixin:
    """``Tx``'s workflow statements."""

    cursor: apsw.Cursor

    def insert_run(self, name: str | None, steps: Sequence[StepRow], now: float,
                   workflow: int | None = None) -> tuple[int, list[int]]:
        """Write a run and its steps (in order: a step waits only on earlier ones); returns
        the run's id and the steps' job ids. Raises ValueError for a token that cannot be
        waited on (none, not a token, already failed): nothing is written then."""
        cur = self.cursor
        if workflow is None:
            cur.execute(INSERT_WORKFLOW, (name, now))
            workflow = int(cur.connection.last_insert_rowid())
        ids: list[int] = []
        tokens: dict[int, str] = {}
        for step in steps:
            for kind, ref in step.after:
                if kind == "token" and ref not in tokens:
                    tokens[ref] = self._token_for(ref, workflow)
        rows: list[tuple[Any, ...]] = []
        for step in steps:
            waits = [(kind, ref) for kind, ref in step.after
                     if kind == "step" or tokens[ref] != "succeeded"]
            job = step.job
            if step.delay and not waits:  # ready now: its delay counts from now
                job = replace(job, run_at=now + step.delay, expires_at=None if (
                    job.expires_at is None) else job.expires_at - job.run_at + now + step.delay)
            elif step.delay is not None and not waits and job.run_at != now:
                job = replace(job, run_at=now, expires_at=None if (
                    job.expires_at is None) else job.expires_at - job.run_at + now)
            state = "waiting" if waits else "scheduled" if job.run_at > now else "queued"
            rows.append((
                job.task, job.queue, state, job.priority, job.args, job.kwargs, job.run_at,
                job.run_at, now, job.max_attempts, job.timeout, job.expires_at,
                job.concurrency_key, job.concurrency_limit, job.tags, workflow, step.delay,
                len(set(waits)) if waits else None, job.flow_rate, job.flow_period))
        # One statement for all steps (a 10,000-step run paid a statement per step): this
        # transaction holds the write lock, so they take the ids above the top one in order.
        top = int(_scalar(cur, sql.TOP_JOB_ID))
        cur.executemany(INSERT_STEP, rows)
        ids = list(range(top + 1, top + 1 + len(rows)))
        if int(cur.connection.last_insert_rowid()) != ids[-1]:  # never, but then read them
            ids = [int(r[0]) for r in cur.execute(sql.IDS_ABOVE, (top,))]
        for step, job_id in zip(steps, ids, strict=True):
            if step.job.tags is not None:
                cur.execute(sql.INSERT_JOB_TAGS, (job_id, step.job.tags))
        cur.executemany(INSERT_DEP, [
            (job_id, position, ids[ref] if kind == "step" else ref)
            for step, job_id in zip(steps, ids, strict=True)
            for position, (kind, ref) in enumerate(step.after)])
        return workflow, ids

    def _token_for(self, token: int, workflow: int) -> str:
        row = self.cursor.execute(SELECT_TOKEN, (token,)).fetchone()
        if row is None:
            raise ValueError(f"token {token} does not exist (never created, or pruned); "
                             "create one with app.create_token()")
        task, state, _, _, error = row
        if task != TOKEN_TASK:
            raise ValueError(f"job {token} is not a token; wait on app.create_token() values")
        if state in ("failed", "cancelled"):
            raise ValueError(f"token {token} is {state} ({error}); nothing could ever start "
                             "after it: create a new token")
        self.cursor.execute(ATTACH_TOKEN, (workflow, token))
        return str(state)

    def create_token(self, timeout: float | None, now: float) -> int:
        self.cursor.execute(INSERT_TOKEN, (now, None if timeout is None else now + timeout))
        return int(self.cursor.connection.last_insert_rowid())

    def complete_token(self, token: int, data: str, now: float) -> str | None:
        """Complete a waiting token with ``data`` (JSON text); None when done, else why not."""
        cur = self.cursor
        cur.execute(COMPLETE_TOKEN, (data, now, token))
        if cur.connection.changes() == 1:
            return None
        row = cur.execute(SELECT_TOKEN, (token,)).fetchone()
        if row is None:
            return f"token {token} does not exist (never created, or pruned)"
        task, state, _, _, error = row
        if task != TOKEN_TASK:
            return f"job {token} is not a token"
        if state == "succeeded":
            return f"token {token} was already completed; a token completes once"
        return f"token {token} is {state} ({error}); it can no longer be completed"

    def expire_tokens(self, now: float, limit: int = 500) -> int:
        """Fail tokens past their timeout (what waits on them is cancelled by the cascade)."""
        self.cursor.execute(EXPIRE_TOKENS, (now, limit))
        return int(self.cursor.connection.changes())

    def continue_with(self, job_id: int, attempt: int,
                      children: Sequence[tuple[NewJob, float | None]], continuation: NewJob,
                      delay: float | None, worker: str, started: float, now: float,
                      name: str) -> bool:
        """Record a success that returned ``litejobs.then``: its children (ready at once) and
        its continuation (waiting on all of them) join its run (a new one named ``name`` when
        it had none), its downstream steps wait on the continuation, and it ends succeeded.
        False (nothing written) when the attempt no longer holds the job."""
        cur = self.cursor
        row = cur.execute(SELECT_RUNNING_STEP, (job_id, attempt)).fetchone()
        if row is None:
            return False
        workflow = row[0]
        steps = [StepRow(child, (), child_delay) for child, child_delay in children]
        steps.append(StepRow(continuation, [("step", i) for i in range(len(children))],
                             delay))
        workflow, ids = self.insert_run(name, steps, now, workflow)
        cur.execute(SET_WORKFLOW, (workflow, job_id))
        cur.execute(REWIRE, (ids[-1], job_id))
        cur.execute(FINISH_CONTINUED, (ids[-1], started, now, worker, job_id, attempt))
        return cur.connection.changes() == 1

    def step_results(self, ids: Sequence[int]) -> dict[int, str]:
        """``{step id: JSON array of its upstream steps' results, in the order of after}``."""
        return {int(i): str(r) for i, r in self.cursor.execute(STEP_RESULTS, (_id_list(ids),))}

    def blocked_steps(self, ids: Sequence[int]) -> list[tuple[int, int | None, str]]:
        """Of ``ids``, the failed or cancelled steps a retry must not queue: (id, the first
        upstream step that failed or was cancelled, task); tokens too (not retried)."""
        return [(int(a), None if b is None else int(b), str(t))
                for a, b, t in self.cursor.execute(BLOCKED_STEPS, (_id_list(ids),))]

    def wait_again(self, ids: Sequence[int], retries: int) -> int:
        """Retry those of ``ids`` whose upstream steps run (none failed or cancelled): back to
        waiting for them, with ``retries`` retries. Returns how many."""
        self.cursor.execute(WAIT_AGAIN, (retries + 1, _id_list(ids)))
        return int(self.cursor.connection.changes())

    def blocker(self, job_id: int) -> tuple[int, str, str] | None:
        """The upstream step (id, state, task) that stands first in the way of ``job_id``."""
        row = self.cursor.execute(BLOCKER, (job_id,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]))

    def revive(self, ids: Sequence[int]) -> int:
        """Put the steps that ``ids`` (retried now) cancelled back to waiting; a cancelled
        run of theirs is cancelled no more (a retry resumes it)."""
        self.cursor.execute(RESUME_RUNS, (_id_list(ids),))
        total = 0
        while True:
            self.cursor.execute(REVIVE, (_id_list(ids),))
            n = int(self.cursor.connection.changes())
            if not n:
                return total
            total += n

    def prune_runs(self, before: float, limit: int = 500) -> int:
        self.cursor.execute(PRUNE_RUNS, (before, limit))
        return int(self.cursor.connection.changes())
