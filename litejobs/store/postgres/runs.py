"""Workflow runs outside the supervisor's transaction in the PostgreSQL store (``Workflows``):
writing a run, tokens, cancelling a run, the reads behind ``WorkflowRun``, ``litejobs
workflows`` and ``show``; and the operator's retry, which revives what a retried step had
cancelled (the SQLite store's ``StoreAdmin.retry``/``retry_many``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from litejobs.store.flows import StepRow
from litejobs.store.postgres import sql
from litejobs.store.postgres.tx import PgTx
from litejobs.store.retries import ManualRetry, blocking_root, retry_in
from litejobs.store.rows import Row
from litejobs.store.runreads import RunReads, RunSQL
from litejobs.store.schema import TOKEN_TASK

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgRunsMixin"]

T = TypeVar("T")

SELECT_RUN = "SELECT id, name, created_at, cancelled_at FROM workflows WHERE id = %s"
RUN_COUNTS = "SELECT state, count(*) AS n FROM jobs WHERE workflow = %s GROUP BY state"
LIST_RUNS = """
SELECT w.id, w.name, w.created_at, w.cancelled_at,
       (SELECT json_object_agg(state, n) FROM (
            SELECT state, count(*) AS n FROM jobs WHERE workflow = w.id GROUP BY state) c)
           AS counts
FROM workflows w ORDER BY w.id DESC LIMIT %s
"""
RUN_SINKS = f"""
SELECT j.id FROM jobs j
WHERE j.workflow = %s AND j.continuation IS NULL AND j.task != '{TOKEN_TASK}'
  AND NOT EXISTS (SELECT 1 FROM job_deps d WHERE d.upstream = j.id)
ORDER BY j.id
"""
UPSTREAM_OF = "SELECT upstream FROM job_deps WHERE job_id = %s ORDER BY position"
DOWNSTREAM_OF = "SELECT job_id FROM job_deps WHERE upstream = %s ORDER BY job_id"
# A token is left waiting: another run may wait on it too.
RUN_PENDING = f"""
SELECT id FROM jobs WHERE workflow = %s
  AND state IN ('waiting', 'scheduled', 'queued', 'running') AND task != '{TOKEN_TASK}'
ORDER BY id
"""
CANCEL_RUN = f"""
UPDATE workflows SET cancelled_at = {sql.NOW} WHERE id = %s AND cancelled_at IS NULL
"""


class PgRunsMixin(RunReads, ManualRetry):
    """``PostgresStore``'s workflow operations outside the supervisor, and its retry."""

    run_sql = RunSQL(SELECT_RUN, RUN_COUNTS, LIST_RUNS, RUN_SINKS, UPSTREAM_OF, DOWNSTREAM_OF)

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

        def write(self, fn: Callable[[PgTx], T]) -> T: ...

        def _transaction(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T: ...

    def write_run(self, name: str | None, steps: Sequence[StepRow], now: float,
                  ) -> tuple[int, list[int]]:
        """Write a run and every step in one transaction."""
        return self.write(lambda tx: tx.insert_run(name, steps, now))

    def create_token(self, timeout: float | None, now: float) -> int:
        return int(self.write(lambda tx: tx.create_token(timeout, now)))

    def complete_token(self, token: int, data: str, now: float) -> str | None:
        return self.write(lambda tx: tx.complete_token(token, data, now))

    def cancel_run(self, run_id: int, reason: str, now: float) -> list[int]:
        """Cancel the run: every step not yet ended, running ones included (their
        supervisors stop them), in one transaction. Returns the ids it cancelled."""

        def work(conn: psycopg.Connection[Any]) -> list[int]:
            ids = [int(r["id"]) for r in conn.execute(RUN_PENDING, (run_id,)).fetchall()]
            if not ids:
                return ids  # it had ended: it stays succeeded (or failed)
            conn.execute(CANCEL_RUN, (run_id,))
            conn.execute(sql.RECORD_CANCELLED_ATTEMPTS, (reason, ids))
            conn.execute(sql.CANCEL_JOBS, (reason, ids))
            return ids

        return self._transaction(work)

    # --- the operator's retry --------------------------------------------------------------------

    def retry_many(self, ids: Sequence[int], retries: int, now: float,
                   blocked: list[tuple[int, int | None, str]] | None = None) -> int:
        """Manual retry of many failed or cancelled jobs, in one short transaction. Workflow
        steps whose upstream steps have not all succeeded, and tokens, are left as they are
        (listed in ``blocked``: id, the upstream step, task); the steps a retried one had
        cancelled go back to waiting."""
        id_list = [int(i) for i in ids]

        def retry(tx: PgTx) -> tuple[int, list[tuple[int, int | None, str]]]:
            return retry_in(tx, id_list, retries, lambda todo: int(
                tx.conn.execute(sql.RETRY_JOBS, (retries + 1, list(todo))).rowcount))

        n, stuck = self.write(retry)
        if blocked is not None:
            blocked[:] = stuck
        return int(n)

    def _blocking_root(self, job_id: int) -> tuple[int, str, str] | None:
        return self._transaction(lambda conn: blocking_root(PgTx(conn), job_id))
