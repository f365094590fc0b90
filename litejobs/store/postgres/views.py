"""The dashboard's reads of jobs in the PostgreSQL store: the dialect of ``litejobs.store.
paging`` (the filter, keyset pages newest first whose scan is bounded, the capped count, a bulk
action's ids and a workflow's graph, written once for both stores). Nothing here writes.

Differences, and why: the planner picks the partial index of a state by itself (SQLite
needed ``INDEXED BY``), so a page of few jobs in such states needs no clause of its own; a
state filter is one array parameter; a text search is ``ILIKE`` under the "C" collation,
which ignores the case of ASCII letters only, as SQLite's ``LIKE`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litejobs.job import State
from litejobs.store.paging import JobPages, PageSQL, few_in_states

__all__ = ["PgViewsMixin"]

#: Jobs in partial-index states below which a page reads them by state, not by a window.
STATE_EXACT = 5_000
_INDEXED_STATES = ("queued", "scheduled", "running")

# ILIKE under the "C" collation folds ASCII letters only, as SQLite's LIKE does.
TEXT_IN = ("((args COLLATE \"C\") ILIKE %s ESCAPE '\\' "
           "OR (kwargs COLLATE \"C\") ILIKE %s ESCAPE '\\' "
           "OR (error COLLATE \"C\") ILIKE %s ESCAPE '\\')")
STATE_COUNT = "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE state = %s LIMIT %s) c"


class PgViewsMixin(JobPages):
    """The dashboard's reads of PostgresStore (see protocols.Reads)."""

    page_sql = PageSQL.of("%s", TEXT_IN)

    def _states_clause(self, states: Sequence[str]) -> tuple[str, list[Any]]:
        return "state = ANY(%s)", [[State(s).value for s in states]]

    def _state_narrowing(self, states: Sequence[str]) -> str | None:
        return "" if few_in_states(states, _INDEXED_STATES, self._in_state, STATE_EXACT) else None

    def _in_state(self, state: str, cap: int) -> int:
        return int(self._read(STATE_COUNT, (state, cap))[0]["n"])
