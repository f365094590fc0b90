"""Workflow runs outside the supervisor's transaction: writing a run, tokens, cancelling a
run, and the reads behind ``WorkflowRun``, ``litejobs workflows`` and ``show``."""

from __future__ import annotations

from collections.abc import Sequence

import apsw

from litejobs.store import sql
from litejobs.store.connections import Connections
from litejobs.store.flows import (
    CANCEL_RUN,
    DOWNSTREAM_OF,
    LIST_RUNS,
    RUN_COUNTS,
    RUN_PENDING,
    RUN_SINKS,
    SELECT_RUN,
    UPSTREAM_OF,
    StepRow,
)
from litejobs.store.rows import _id_list
from litejobs.store.runreads import RunReads, RunSQL
from litejobs.store.tx import Tx

__all__ = ["StoreWorkflows"]


class StoreWorkflows(RunReads, Connections):
    """``Store``'s workflow operations outside the supervisor's transaction."""

    run_sql = RunSQL(SELECT_RUN, RUN_COUNTS, LIST_RUNS, RUN_SINKS, UPSTREAM_OF, DOWNSTREAM_OF)

    def write_run(self, name: str | None, steps: Sequence[StepRow], now: float,
                  ) -> tuple[int, list[int]]:
        """Write a run and every step in one transaction."""
        return self._transaction(self.connection(),
                                 lambda cur: Tx(cur).insert_run(name, steps, now))

    def create_token(self, timeout: float | None, now: float) -> int:
        return self._transaction(self.connection(), lambda cur: Tx(cur).create_token(timeout, now))

    def complete_token(self, token: int, data: str, now: float) -> str | None:
        return self._transaction(self.connection(),
                                 lambda cur: Tx(cur).complete_token(token, data, now))

    def cancel_run(self, run_id: int, reason: str, now: float) -> list[int]:
        """Cancel the run: every step not yet ended, running ones included (their
        supervisors stop them), in one transaction. Returns the ids it cancelled."""

        def work(cur: apsw.Cursor) -> list[int]:
            ids = [int(r[0]) for r in cur.execute(RUN_PENDING, (run_id,))]
            if not ids:
                return ids  # it had ended: it stays succeeded (or failed)
            cur.execute(CANCEL_RUN, (now, run_id))
            id_list = _id_list(ids)
            cur.execute(sql.RECORD_CANCELLED_ATTEMPTS, (now, reason, id_list))
            cur.execute(sql.CANCEL_JOBS, (reason, now, id_list))
            return ids

        return self._transaction(self.connection(), work)
