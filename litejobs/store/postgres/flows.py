"""Workflows in the PostgreSQL store's write transaction (``WorkflowTx``): runs, steps and
their edges, tokens, continuations, and the retry that revives steps; with the SQLite store's
meaning (litejobs/store/flows.py), every time on the server's clock.

The fan-in and the cascade are triggers (``FLOW_TRIGGERS``, part of the schema), as in the
SQLite store, so every path that ends a step (an outcome, a token's completion, a cancel, an
expiry, a rescue) does them in its own transaction. Across hosts they stay exact because an
upstream step's end and its downstream step's count meet on the downstream row's lock: two
upstream steps succeeding at once on two hosts decrement it one after the other, and the
second sees the first committed (each statement of a trigger takes a fresh snapshot). A run
that waits on a token locks the token's row (``FOR UPDATE``) while it is written, so a
token completed at that moment either is seen succeeded or sees the new steps waiting.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.newjob import NewJob
from litejobs.store.flows import RUN_CANCELLED, StepRow
from litejobs.store.postgres import sql
from litejobs.store.schema import TOKEN_TASK

if TYPE_CHECKING:
    import psycopg

__all__ = ["FLOW_TRIGGERS", "PgFlowsMixin"]

NOW = sql.NOW
_TOKEN = f"'{TOKEN_TASK}'"

# When a step becomes ready: its delay after the success that readied it, or its absolute
# run_at (ready_delay NULL); on the server's clock, as NEW.finished_at is.
_READY_AT = ("(CASE WHEN ready_delay IS NULL THEN greatest(run_at, NEW.finished_at) "
             "ELSE NEW.finished_at + ready_delay END)")

#: The schema's workflow triggers (the SQLite schema's jobs_fan_in and jobs_cascade), and
#: the tokens' index: ``expire_due`` looks for expired tokens at every poll.
FLOW_TRIGGERS = f"""
CREATE INDEX jobs_tokens ON jobs (expires_at)
    WHERE state = 'waiting' AND task = {_TOKEN} AND expires_at IS NOT NULL;
CREATE FUNCTION litejobs_fan_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs SET upstream_left = upstream_left - 1
    WHERE state = 'waiting' AND id IN (SELECT job_id FROM job_deps WHERE upstream = NEW.id);
    UPDATE jobs SET
        state = CASE WHEN {_READY_AT} > NEW.finished_at THEN 'scheduled' ELSE 'queued' END,
        run_at = {_READY_AT},
        scheduled_at = {_READY_AT},
        expires_at = expires_at - run_at + {_READY_AT}
    WHERE state = 'waiting' AND task != {_TOKEN}
      AND id IN (SELECT job_id FROM job_deps WHERE upstream = NEW.id)
      AND upstream_left <= 0
      AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
                      WHERE d.job_id = jobs.id AND u.state != 'succeeded');
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_fan_in AFTER UPDATE OF state ON jobs FOR EACH ROW
    WHEN (NEW.workflow IS NOT NULL AND NEW.state = 'succeeded'
          AND OLD.state IS DISTINCT FROM 'succeeded')
    EXECUTE FUNCTION litejobs_fan_in();

-- A step that failed or was cancelled cancels every step waiting downstream of it, all the
-- way down in one statement naming itself (the steps it cancels fire this again and find
-- nothing left waiting).
CREATE FUNCTION litejobs_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs SET state = 'cancelled', finished_at = NEW.finished_at,
        error = 'upstream step ' || NEW.id || ' ' || NEW.state
    WHERE state = 'waiting' AND id IN (
        WITH RECURSIVE down (id) AS (
            SELECT d.job_id FROM job_deps d JOIN jobs w ON w.id = d.job_id
            WHERE d.upstream = NEW.id AND w.state = 'waiting'
            UNION
            SELECT d.job_id FROM down JOIN job_deps d ON d.upstream = down.id
            JOIN jobs w ON w.id = d.job_id WHERE w.state = 'waiting')
        SELECT id FROM down);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_cascade AFTER UPDATE OF state ON jobs FOR EACH ROW
    WHEN (NEW.workflow IS NOT NULL AND NEW.state IN ('failed', 'cancelled')
          AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION litejobs_cascade();
"""

INSERT_WORKFLOW = f"INSERT INTO workflows (name, created_at) VALUES (%s, {NOW}) RETURNING id"
# Steps as parallel arrays, taking ids in array order; times as distances from the server's
# now (run_in, expires_in).
INSERT_STEPS = f"""
INSERT INTO jobs (task, queue, state, priority, args, kwargs, run_at, scheduled_at, created_at,
                  max_attempts, timeout, expires_at, concurrency_key, concurrency_limit, tags,
                  workflow, ready_delay, upstream_left, flow_rate, flow_period)
SELECT u.task, u.queue, u.state, u.priority, u.args, u.kwargs, t.now + u.run_in,
       t.now + u.run_in, t.now, u.max_attempts, u.timeout, t.now + u.expires_in, u.ckey,
       u.climit, u.tags, %s, u.ready_delay, u.upstream_left, u.flow_rate, u.flow_period
FROM (SELECT {NOW} AS now) t,
     unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::text[],
            %s::float8[], %s::bigint[], %s::float8[], %s::float8[], %s::text[], %s::bigint[],
            %s::text[], %s::float8[], %s::bigint[], %s::bigint[], %s::float8[])
     WITH ORDINALITY AS u (task, queue, state, priority, args, kwargs, run_in, max_attempts,
                          timeout, expires_in, ckey, climit, tags, ready_delay, upstream_left,
                          flow_rate, flow_period, n)
ORDER BY u.n
RETURNING id
"""
INSERT_DEPS = """
INSERT INTO job_deps (job_id, position, upstream)
SELECT * FROM unnest(%s::bigint[], %s::int[], %s::bigint[])
"""
INSERT_TOKEN = f"""
INSERT INTO jobs (task, queue, state, args, kwargs, run_at, scheduled_at, created_at,
                  max_attempts, expires_at)
SELECT {_TOKEN}, 'litejobs', 'waiting', '[]', '{{}}', t.now, t.now, t.now, 1, t.now + %s
FROM (SELECT {NOW} AS now) t
RETURNING id
"""
SELECT_TOKEN = "SELECT task, state, error FROM jobs WHERE id = %s"
LOCK_TOKEN = "SELECT task, state, error FROM jobs WHERE id = %s FOR UPDATE"
ATTACH_TOKEN = "UPDATE jobs SET workflow = %s WHERE id = %s AND workflow IS NULL"
COMPLETE_TOKEN = f"""
UPDATE jobs SET state = 'succeeded', result = %s, finished_at = {NOW}
WHERE id = %s AND task = {_TOKEN} AND state = 'waiting'
"""
EXPIRE_TOKENS = f"""
UPDATE jobs SET state = 'failed', finished_at = {NOW},
    error = 'token not completed within its timeout of '
            || round((expires_at - created_at)::numeric, 3)::float8::text || ' s'
WHERE id IN (SELECT id FROM jobs WHERE state = 'waiting' AND expires_at IS NOT NULL
             AND expires_at < {NOW} AND task = {_TOKEN} LIMIT %s FOR UPDATE SKIP LOCKED)
"""
REWIRE = "UPDATE job_deps SET upstream = %s WHERE upstream = %s"
SET_WORKFLOW = "UPDATE jobs SET workflow = %s WHERE id = %s AND workflow IS NULL"
SELECT_RUNNING_STEP = ("SELECT workflow FROM jobs WHERE id = %s AND attempt = %s "
                       "AND state = 'running' FOR UPDATE")
# (continuation, started ago, worker, id, attempt)
FINISH_CONTINUED = f"""
UPDATE jobs SET state = 'succeeded', result = NULL, continuation = %s, error = NULL,
                started_at = {NOW} - %s, finished_at = {NOW}, leased_by = %s,
                lease_until = NULL
WHERE id = %s AND attempt = %s AND state = 'running'
"""
BLOCKED_STEPS = f"""
SELECT j.id, (SELECT u.id FROM job_deps d JOIN jobs u ON u.id = d.upstream
              WHERE d.job_id = j.id AND u.state IN ('failed', 'cancelled')
              ORDER BY d.position LIMIT 1) AS upstream,
       j.task
FROM jobs j
WHERE j.id = ANY(%s) AND j.workflow IS NOT NULL AND j.state IN ('failed', 'cancelled')
  AND (j.task = {_TOKEN} OR EXISTS (
      SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
      WHERE d.job_id = j.id AND u.state IN ('failed', 'cancelled')))
ORDER BY j.id
"""
_LEFT = """(SELECT count(DISTINCT d.upstream) FROM job_deps d JOIN jobs u ON u.id = d.upstream
                     WHERE d.job_id = jobs.id AND u.state != 'succeeded')"""
WAIT_AGAIN = f"""
UPDATE jobs SET state = 'waiting', max_attempts = attempt - interrupts + %s, crashes = 0,
    error = NULL, finished_at = NULL, result = NULL, expires_at = NULL, upstream_left = {_LEFT}
WHERE id = ANY(%s) AND workflow IS NOT NULL AND state IN ('failed', 'cancelled')
  AND task != {_TOKEN}
  AND EXISTS (SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
              WHERE d.job_id = jobs.id AND u.state != 'succeeded')
"""
BLOCKER = """
SELECT u.id, u.state, u.task FROM job_deps d JOIN jobs u ON u.id = d.upstream
WHERE d.job_id = %s AND u.state != 'succeeded'
ORDER BY u.state IN ('failed', 'cancelled') DESC, d.position LIMIT 1
"""
REVIVE = f"""
UPDATE jobs SET state = 'waiting', error = NULL, finished_at = NULL, upstream_left = {_LEFT}
WHERE state = 'cancelled' AND (error LIKE 'upstream step %% %%' OR error = %s)
  AND id IN (
    WITH RECURSIVE down (id) AS (
        SELECT d.job_id FROM job_deps d WHERE d.upstream = ANY(%s)
        UNION
        SELECT d.job_id FROM down JOIN job_deps d ON d.upstream = down.id)
    SELECT id FROM down)
  AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
                  WHERE d.job_id = jobs.id AND u.state IN ('failed', 'cancelled'))
"""
RESUME_RUNS = """
UPDATE workflows SET cancelled_at = NULL
WHERE cancelled_at IS NOT NULL AND id IN (
    SELECT workflow FROM jobs WHERE id = ANY(%s)
    AND workflow IS NOT NULL AND state IN ('queued', 'scheduled', 'waiting'))
"""
# The results of claimed steps' upstream steps, in the order of their `after` (each stored
# result is JSON text already: joined as it is).
STEP_RESULTS = """
SELECT d.job_id, '[' || string_agg(coalesce(u.result, 'null'), ',' ORDER BY d.position) || ']'
       AS results
FROM job_deps d LEFT JOIN jobs u ON u.id = d.upstream
WHERE d.job_id = ANY(%s)
GROUP BY d.job_id
"""
# (seconds ago, limit)
PRUNE_RUNS = f"""
DELETE FROM workflows WHERE id IN (
    SELECT w.id FROM workflows w WHERE w.created_at < {NOW} - %s
    AND NOT EXISTS (SELECT 1 FROM jobs WHERE workflow = w.id) LIMIT %s)
"""


def _ids(ids: Sequence[int]) -> list[int]:
    return [int(i) for i in ids]


def _placed(step: StepRow, waits: bool, now: float) -> NewJob:
    """The step's job with its run time as the SQLite store places it (a delay counts from
    now when it is ready at once)."""
    job = step.job
    if step.delay and not waits:
        return dataclasses.replace(job, run_at=now + step.delay, expires_at=None if (
            job.expires_at is None) else job.expires_at - job.run_at + now + step.delay)
    if step.delay is not None and not waits and job.run_at != now:
        return dataclasses.replace(job, run_at=now, expires_at=None if (
            job.expires_at is None) else job.expires_at - job.run_at + now)
    return job


class PgFlowsMixin:
    """``PgTx``'s workflow statements (the ``WorkflowTx`` protocol)."""

    conn: psycopg.Connection[Any]

    if TYPE_CHECKING:
        def _know_queues(self, queues: Iterable[str]) -> None: ...

    def insert_run(self, name: str | None, steps: Sequence[StepRow], now: float,
                   workflow: int | None = None) -> tuple[int, list[int]]:
        """Write a run and its steps (a step waits only on earlier ones); returns the run's
        id and the steps' job ids. Raises ValueError for a token that cannot be waited on
        (none, not a token, already failed): nothing is written then."""
        conn = self.conn
        if workflow is None:
            got = conn.execute(INSERT_WORKFLOW, (name,)).fetchone()
            assert got is not None
            workflow = int(got["id"])
        tokens: dict[int, str] = {}
        for step in steps:
            for kind, ref in step.after:
                if kind == "token" and ref not in tokens:
                    tokens[ref] = self._token_for(ref, workflow)
        cols: list[list[Any]] = [[] for _ in range(17)]
        for step in steps:
            waits = [(kind, ref) for kind, ref in step.after
                     if kind == "step" or tokens[ref] != "succeeded"]
            job = _placed(step, bool(waits), now)
            state = "waiting" if waits else "scheduled" if job.run_at > now else "queued"
            for col, value in zip(cols, (
                    job.task, job.queue, state, job.priority, job.args, job.kwargs,
                    float(job.run_at - now), job.max_attempts,
                    None if job.timeout is None else float(job.timeout),
                    None if job.expires_at is None else float(job.expires_at - now),
                    job.concurrency_key, job.concurrency_limit, job.tags,
                    None if step.delay is None else float(step.delay),
                    len(set(waits)) if waits else None, job.flow_rate,
                    None if job.flow_period is None else float(job.flow_period)), strict=True):
                col.append(value)
        if not steps:
            return workflow, []
        self._know_queues({step.job.queue for step in steps})
        rows = conn.execute(INSERT_STEPS, (workflow, *cols)).fetchall()
        ids = sorted(int(r["id"]) for r in rows)  # taken in array order
        for step, job_id in zip(steps, ids, strict=True):
            if step.job.tags is not None:
                conn.execute(sql.INSERT_JOB_TAGS, (job_id, step.job.tags))
        edges = [(job_id, position, ids[ref] if kind == "step" else ref)
                 for step, job_id in zip(steps, ids, strict=True)
                 for position, (kind, ref) in enumerate(step.after)]
        if edges:
            conn.execute(INSERT_DEPS, ([e[0] for e in edges], [e[1] for e in edges],
                                       [e[2] for e in edges]))
        return workflow, ids

    def _token_for(self, token: int, workflow: int) -> str:
        # Locked until this run commits: a completion at this moment waits for it, then its
        # fan-in sees the steps waiting on the token.
        row = self.conn.execute(LOCK_TOKEN, (token,)).fetchone()
        if row is None:
            raise ValueError(f"token {token} does not exist (never created, or pruned); "
                             "create one with app.create_token()")
        if row["task"] != TOKEN_TASK:
            raise ValueError(f"job {token} is not a token; wait on app.create_token() values")
        if row["state"] in ("failed", "cancelled"):
            raise ValueError(f"token {token} is {row['state']} ({row['error']}); nothing could "
                             "ever start after it: create a new token")
        self.conn.execute(ATTACH_TOKEN, (workflow, token))
        return str(row["state"])

    def create_token(self, timeout: float | None, now: float) -> int:
        got = self.conn.execute(INSERT_TOKEN, (
            None if timeout is None else float(timeout),)).fetchone()
        assert got is not None
        return int(got["id"])

    def complete_token(self, token: int, data: str, now: float) -> str | None:
        """Complete a waiting token with ``data`` (JSON text); None when done, else why not."""
        if self.conn.execute(COMPLETE_TOKEN, (data, token)).rowcount == 1:
            return None
        row = self.conn.execute(SELECT_TOKEN, (token,)).fetchone()
        if row is None:
            return f"token {token} does not exist (never created, or pruned)"
        if row["task"] != TOKEN_TASK:
            return f"job {token} is not a token"
        if row["state"] == "succeeded":
            return f"token {token} was already completed; a token completes once"
        return f"token {token} is {row['state']} ({row['error']}); it can no longer be completed"

    def expire_tokens(self, now: float, limit: int = 500) -> int:
        """Fail tokens past their timeout on the server's clock (what waits on them is
        cancelled by the cascade)."""
        return int(self.conn.execute(EXPIRE_TOKENS, (limit,)).rowcount)

    def continue_with(self, job_id: int, attempt: int,
                      children: Sequence[tuple[NewJob, float | None]], continuation: NewJob,
                      delay: float | None, worker: str, started: float, now: float,
                      name: str) -> bool:
        """Record a success that returned ``litejobs.then`` (see the SQLite store's): False
        (nothing written) when the attempt no longer holds the job."""
        conn = self.conn
        row = conn.execute(SELECT_RUNNING_STEP, (job_id, attempt)).fetchone()
        if row is None:
            return False
        steps = [StepRow(child, (), child_delay) for child, child_delay in children]
        steps.append(StepRow(continuation, [("step", i) for i in range(len(children))],
                             delay))
        workflow, ids = self.insert_run(name, steps, now, row["workflow"])
        conn.execute(SET_WORKFLOW, (workflow, job_id))
        conn.execute(REWIRE, (ids[-1], job_id))
        return conn.execute(FINISH_CONTINUED, (ids[-1], float(now - started), worker, job_id,
                                               attempt)).rowcount == 1

    def step_results(self, ids: Sequence[int]) -> dict[int, str]:
        """``{step id: JSON array of its upstream steps' results, in the order of after}``."""
        return {int(r["job_id"]): str(r["results"])
                for r in self.conn.execute(STEP_RESULTS, (_ids(ids),)).fetchall()}

    def blocked_steps(self, ids: Sequence[int]) -> list[tuple[int, int | None, str]]:
        """Of ``ids``, the failed or cancelled steps a retry must not queue (and tokens)."""
        return [(int(r["id"]), None if r["upstream"] is None else int(r["upstream"]),
                 str(r["task"])) for r in self.conn.execute(BLOCKED_STEPS, (_ids(ids),))]

    def wait_again(self, ids: Sequence[int], retries: int) -> int:
        """Retry those of ``ids`` whose upstream steps run: back to waiting for them."""
        return int(self.conn.execute(WAIT_AGAIN, (retries + 1, _ids(ids))).rowcount)

    def blocker(self, job_id: int) -> tuple[int, str, str] | None:
        """The upstream step (id, state, task) that stands first in the way of ``job_id``."""
        row = self.conn.execute(BLOCKER, (job_id,)).fetchone()
        return None if row is None else (int(row["id"]), str(row["state"]), str(row["task"]))

    def revive(self, ids: Sequence[int]) -> int:
        """Put the steps that ``ids`` (retried now) cancelled back to waiting; a cancelled
        run of theirs is cancelled no more."""
        id_list = _ids(ids)
        self.conn.execute(RESUME_RUNS, (id_list,))
        total = 0
        while True:  # each level sees the one above it revived
            n = int(self.conn.execute(REVIVE, (RUN_CANCELLED, id_list)).rowcount)
            if not n:
                return total
            total += n

    def prune_runs(self, before: float, limit: int = 500) -> int:
        """Delete runs made before ``before`` (this process's clock, as ``prune``'s) that
        have no job left."""
        return int(self.conn.execute(PRUNE_RUNS, (float(time.time() - before),
                                                  limit)).rowcount)
