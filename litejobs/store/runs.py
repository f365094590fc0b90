"""Workflow runs outside the supervisor's transaction: writing a run, tokens, cancelling a
run, and the reads behind ``WorkflowRun``, ``litejobs workflows`` and ``show``."""

from __future__ import annotations

import json
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
    run_state,
)
from litejobs.store.rows import Row, _id_list
from litejobs.store.tx import Tx

__all__ = ["StoreWorkflows"]


class StoreWorkflows(Connections):
    """``Store``'s workflow operations outside the supervisor's transaction."""

    def run(self, run_id: int) -> Row | None:
        """A run: id, name, created_at, cancelled_at, counts (by state), state."""
        rows = self._read(SELECT_RUN, (run_id,))
        if not rows:
            return None
        row = rows[0]
        counts = {str(r["state"]): int(r["count(*)"])
                  for r in self._read(RUN_COUNTS, (run_id,))}
        row["counts"] = counts
        row["state"] = run_state(counts, row["cancelled_at"] is not None)
        return row

    def runs(self, limit: int = 50, state: str | None = None) -> list[Row]:
        """Runs newest first (at most ``limit`` scanned), each with counts and state."""
        out: list[Row] = []
        for row in self._read(LIST_RUNS, (limit,)):
            counts = {k: int(v) for k, v in json.loads(row.pop("counts") or "{}").items()}
            row["counts"] = counts
            row["state"] = run_state(counts, row["cancelled_at"] is not None)
            if state is None or row["state"] == state:
                out.append(row)
        return out

    def run_sinks(self, run_id: int) -> list[int]:
        return [int(r["id"]) for r in self._read(RUN_SINKS, (run_id,))]

    def upstream_of(self, job_id: int) -> list[int]:
        return [int(r["upstream"]) for r in self._read(UPSTREAM_OF, (job_id,))]

    def downstream_of(self, job_id: int) -> list[int]:
        return [int(r["job_id"]) for r in self._read(DOWNSTREAM_OF, (job_id,))]

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
