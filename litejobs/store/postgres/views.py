"""The dashboard's reads of jobs in the PostgreSQL store: keyset pages newest first whose scan
is bounded, a capped count, the ids a bulk action pages through, and a workflow's graph;
with the SQLite store's meaning (litejobs/store/views.py: ``JobFilter``, ``JobPage``, the
scan window and ``searched_to``). Nothing here writes.

Differences, and why: the planner picks the partial index of a state by itself (SQLite
needed ``INDEXED BY``); a text search is ``ILIKE`` under the "C" collation, which ignores
the case of ASCII letters only, as SQLite's ``LIKE`` does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from litejobs.job import State
from litejobs.store.rows import Row, _like_prefix
from litejobs.store.views import GRAPH_STEPS, PAGE_COLUMNS, PAGE_SCAN, JobFilter, JobPage

__all__ = ["PgViewsMixin"]

#: Jobs in partial-index states below which a page reads them by state, not by a window.
STATE_EXACT = 5_000
_INDEXED_STATES = ("queued", "scheduled", "running")

TOP_ID = "SELECT coalesce(max(id), 0) AS id FROM jobs"
OLDER_JOB = "SELECT 1 FROM jobs WHERE id < %s LIMIT 1"
OLDER_TAGGED = "SELECT 1 FROM job_tags WHERE tag = %s AND job_id < %s LIMIT 1"
OLDER_STEP = "SELECT 1 FROM jobs WHERE workflow = %s AND id < %s LIMIT 1"
# ILIKE under the "C" collation folds ASCII letters only, as SQLite's LIKE does.
TEXT_IN = ("((args COLLATE \"C\") ILIKE %s ESCAPE '\\' "
           "OR (kwargs COLLATE \"C\") ILIKE %s ESCAPE '\\' "
           "OR (error COLLATE \"C\") ILIKE %s ESCAPE '\\')")
HAS_TAG = "id IN (SELECT job_id FROM job_tags WHERE tag = %s)"
TAG_FLOOR = ("SELECT job_id AS id FROM job_tags WHERE tag = %s AND job_id < %s "
             "ORDER BY job_id DESC LIMIT 1 OFFSET %s")
WORKFLOW_FLOOR = ("SELECT id FROM jobs WHERE workflow = %s AND id < %s "
                  "ORDER BY id DESC LIMIT 1 OFFSET %s")
STATE_COUNT = "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE state = %s LIMIT %s) c"
COUNT = "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE {where} LIMIT %s) c"
PAGE = "SELECT {columns} FROM jobs WHERE {where} ORDER BY id DESC LIMIT %s"
TAG_PAGE = ("SELECT {columns} FROM job_tags t JOIN jobs ON jobs.id = t.job_id "
            "WHERE t.tag = %s AND t.job_id < %s AND t.job_id >= %s AND {where} "
            "ORDER BY t.job_id DESC LIMIT %s")
IDS_PAGE = "SELECT id FROM jobs WHERE {where} AND id > %s AND id <= %s ORDER BY id LIMIT %s"
TAG_IDS_PAGE = ("SELECT jobs.id FROM job_tags t JOIN jobs ON jobs.id = t.job_id "
                "WHERE t.tag = %s AND t.job_id > %s AND t.job_id <= %s AND {where} "
                "ORDER BY t.job_id LIMIT %s")
GRAPH_NODES = ("SELECT id, task, state, continuation FROM jobs WHERE workflow = %s "
               "ORDER BY id LIMIT %s")
GRAPH_SIZE = "SELECT count(*) AS n FROM jobs WHERE workflow = %s"
GRAPH_EDGES = ("SELECT d.upstream, d.job_id FROM jobs j JOIN job_deps d ON d.job_id = j.id "
               "WHERE j.workflow = %s ORDER BY d.job_id, d.position")


def _where(f: JobFilter, skip_tag: bool = False) -> tuple[str, list[Any]]:
    """The filter as clauses on jobs' columns (joined with AND) and their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if f.states:
        clauses.append("state = ANY(%s)")
        params.append([State(s).value for s in f.states])
    for clause, value in (("task = %s", f.task), ("queue = %s", f.queue),
                          ("workflow = %s", f.workflow), ("created_at >= %s", f.since),
                          ("created_at < %s", f.until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if f.tag is not None and not skip_tag:
        clauses.append(HAS_TAG)
        params.append(f.tag)
    if f.text:
        needles = [f.text]
        escaped = json.dumps(f.text, ensure_ascii=False)[1:-1]
        if escaped != f.text:
            needles.append(escaped)
        for needle in needles:
            params.extend(["%" + _like_prefix(needle)] * 3)
        clauses.append("(" + " OR ".join([TEXT_IN] * len(needles)) + ")")
    return " AND ".join(clauses) or "true", params


class PgViewsMixin:
    """The dashboard's reads of PostgresStore (see protocols.Reads)."""

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

    def top_job_id(self) -> int:
        """The highest job id now (0 for none): a bulk action touches no job above it."""
        return int(self._read(TOP_ID)[0]["id"])

    def job_page(self, f: JobFilter, before: int | None = None, limit: int = 50,
                 scan: int = PAGE_SCAN) -> JobPage:
        """The newest ``limit`` jobs matching ``f`` with an id below ``before`` (None: from
        the newest), looking at ``scan`` rows at most (see the SQLite store's)."""
        top = self.top_job_id() + 1 if before is None else before
        if top <= 1:
            return JobPage()
        floor: int | None
        older: tuple[str, tuple[Any, ...]] = (OLDER_JOB, ())
        if f.tag is not None:
            floor = self._floor(TAG_FLOOR, (f.tag, top, scan - 1))
            older = (OLDER_TAGGED, (f.tag,))
            where, params = _where(f, skip_tag=True)
            statement = TAG_PAGE.format(columns=PAGE_COLUMNS, where=where)
            params = [f.tag, top, floor or 0, *params, limit + 1]
        else:
            where, params = _where(f)
            if f.workflow is not None:
                floor = self._floor(WORKFLOW_FLOOR, (f.workflow, top, scan - 1))
                older = (OLDER_STEP, (f.workflow,))
            elif self._few_in_indexed_states(f.states):
                floor = None
            else:
                floor = top - scan if top - scan > 1 else None
            where += " AND id < %s AND id >= %s"
            params += [top, floor or 0, limit + 1]
            statement = PAGE.format(columns=PAGE_COLUMNS, where=where)
        rows = self._read(statement, params)
        if len(rows) > limit:
            return JobPage(rows[:limit], older=int(rows[limit - 1]["id"]))
        if floor is not None and self._read(older[0], (*older[1], floor)):
            return JobPage(rows, searched_to=floor)
        return JobPage(rows)

    def _floor(self, statement: str, params: Sequence[Any]) -> int | None:
        rows = self._read(statement, params)
        return int(rows[0]["id"]) if rows else None

    def _few_in_indexed_states(self, states: Sequence[str]) -> bool:
        if not states or any(s not in _INDEXED_STATES for s in states):
            return False
        total = 0
        for s in states:
            total += int(self._read(STATE_COUNT, (s, STATE_EXACT + 1))[0]["n"])
        return total <= STATE_EXACT

    def count_jobs(self, f: JobFilter, cap: int = 10_000) -> int:
        """How many jobs match ``f``, counted up to ``cap + 1``."""
        where, params = _where(f)
        return int(self._read(COUNT.format(where=where), [*params, cap + 1])[0]["n"])

    def ids_for(self, f: JobFilter, after_id: int, upto: int, limit: int = 1000) -> list[int]:
        """One page of the ids matching ``f`` in (after_id, upto], in id order."""
        if f.tag is not None:
            where, params = _where(f, skip_tag=True)
            rows = self._read(TAG_IDS_PAGE.format(where=where),
                              [f.tag, after_id, upto, *params, limit])
        else:
            where, params = _where(f)
            rows = self._read(IDS_PAGE.format(where=where), [*params, after_id, upto, limit])
        return [int(r["id"]) for r in rows]

    def workflow_graph(self, run_id: int, limit: int = GRAPH_STEPS,
                       ) -> tuple[list[Row], list[tuple[int, int]], int]:
        """A run's steps (id, task, state; oldest first), its edges (upstream, step) and how
        many steps it has; no steps nor edges when it has more than ``limit``."""
        size = int(self._read(GRAPH_SIZE, (run_id,))[0]["n"])
        if size > limit:
            return [], [], size
        nodes = self._read(GRAPH_NODES, (run_id, limit))
        edges = [(int(r["upstream"]), int(r["job_id"]))
                 for r in self._read(GRAPH_EDGES, (run_id,))]
        return nodes, edges, size
