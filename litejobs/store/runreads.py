"""The reads behind ``WorkflowRun``, ``litejobs workflows`` and ``show``, written once for
both stores: a run with its counts and state, the runs newest first, a run's sinks, a step's
upstream and downstream steps. Each store gives its statements (``RunSQL``). Nothing here
writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from litejobs.store.flows import run_state

if TYPE_CHECKING:
    from litejobs.store.rows import Row

__all__ = ["RunReads", "RunSQL"]


@dataclass(frozen=True, slots=True)
class RunSQL:
    """A store's statements of the run reads: ``select_run`` (id, name, created_at,
    cancelled_at of one run), ``run_counts`` (state and count of its steps, in that order),
    ``list_runs`` (runs newest first with ``counts``: a JSON object of state to count),
    ``run_sinks``, ``upstream_of``, ``downstream_of``."""

    select_run: str
    run_counts: str
    list_runs: str
    run_sinks: str
    upstream_of: str
    downstream_of: str


class RunReads:
    """``Workflows``' reads (see protocols.Workflows), on the store's ``_read``."""

    #: The store's statements.
    run_sql: ClassVar[RunSQL]

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

    def run(self, run_id: int) -> Row | None:
        """A run: id, name, created_at, cancelled_at, counts (by state), state."""
        rows = self._read(self.run_sql.select_run, (run_id,))
        if not rows:
            return None
        row = rows[0]
        counts = {str(r["state"]): int(r["n"])
                  for r in self._read(self.run_sql.run_counts, (run_id,))}
        row["counts"] = counts
        row["state"] = run_state(counts, row["cancelled_at"] is not None)
        return row

    def runs(self, limit: int = 50, state: str | None = None) -> list[Row]:
        """Runs newest first (at most ``limit`` scanned), each with counts and state."""
        out: list[Row] = []
        for row in self._read(self.run_sql.list_runs, (limit,)):
            raw = row.pop("counts") or {}
            if isinstance(raw, str):  # SQLite's JSON is text; psycopg decodes json itself
                raw = json.loads(raw)
            counts = {str(k): int(v) for k, v in raw.items()}
            row["counts"] = counts
            row["state"] = run_state(counts, row["cancelled_at"] is not None)
            if state is None or row["state"] == state:
                out.append(row)
        return out

    def run_sinks(self, run_id: int) -> list[int]:
        return [int(r["id"]) for r in self._read(self.run_sql.run_sinks, (run_id,))]

    def upstream_of(self, job_id: int) -> list[int]:
        return [int(r["upstream"]) for r in self._read(self.run_sql.upstream_of, (job_id,))]

    def downstream_of(self, job_id: int) -> list[int]:
        return [int(r["job_id"]) for r in self._read(self.run_sql.downstream_of, (job_id,))]
