"""The dashboard's reads of jobs in the SQLite store: the dialect of ``paging`` (which holds
the filter, the keyset pages and their bounded scan, the capped count, a bulk action's ids and
a workflow's graph, for both stores). Nothing here writes.

There is no index on ``task`` (it would cost every enqueue ~12%, see ``schema``), nor on
``created_at``: a filter no index serves walks the jobs newest first, a page at most ``scan``
rows of them (see ``paging``). A state with a partial index (queued, scheduled, running) is
read through that one, named with ``INDEXED BY``, when it holds few jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litejobs.job import State
from litejobs.store.connections import Connections
from litejobs.store.paging import (
    GRAPH_STEPS,
    PAGE_COLUMNS,
    PAGE_SCAN,
    JobFilter,
    JobPage,
    JobPages,
    PageSQL,
    few_in_states,
)

__all__ = ["GRAPH_STEPS", "PAGE_COLUMNS", "PAGE_SCAN", "JobFilter", "JobPage", "StoreViews"]

#: Jobs in partial-index states below which a page reads them through their indexes.
STATE_EXACT = 5_000

# The states whose partial index holds only their jobs, by index.
_STATE_INDEX = {"queued": "jobs_queued", "scheduled": "jobs_scheduled",
                "running": "jobs_running"}

# Stored arguments are JSON: a needle is matched case-insensitively for ASCII (SQLite's LIKE).
TEXT_IN = ("(args LIKE ? ESCAPE '\\' OR kwargs LIKE ? ESCAPE '\\' "
           "OR error LIKE ? ESCAPE '\\')")
# Jobs in one state with a partial index, counted up to a cap through that index.
STATE_COUNT = ("SELECT count(*) AS n FROM (SELECT 1 FROM jobs INDEXED BY {index} "
               "WHERE state = '{state}' LIMIT ?)")
STATE_IDS = "SELECT id FROM jobs INDEXED BY {index} WHERE state = '{state}'"


class StoreViews(JobPages, Connections):
    """The dashboard's reads of Store (see protocols.Reads)."""

    page_sql = PageSQL.of("?", TEXT_IN)

    def _states_clause(self, states: Sequence[str]) -> tuple[str, list[Any]]:
        # literals, not parameters: a partial index serves only a query naming its state
        return "state IN (" + ", ".join(f"'{State(s).value}'" for s in states) + ")", []

    def _state_narrowing(self, states: Sequence[str]) -> str | None:
        if not few_in_states(states, _STATE_INDEX, self._in_state, STATE_EXACT):
            return None
        return " AND id IN (" + " UNION ALL ".join(
            STATE_IDS.format(index=_STATE_INDEX[s], state=s) for s in states) + ")"

    def _in_state(self, state: str, cap: int) -> int:
        statement = STATE_COUNT.format(index=_STATE_INDEX[state], state=state)
        return int(self._read(statement, (cap,))[0]["n"])
