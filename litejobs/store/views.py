"""The dashboard's reads of jobs: a filter, keyset pages newest first whose scan is bounded, a
capped count, the ids a bulk action pages through, and a workflow's graph. Nothing here writes.

There is no index on ``task`` (it would cost every enqueue ~12%, see ``schema``), nor on
``created_at``: a filter no index serves walks the jobs newest first, and a page looks at most
at ``scan`` rows of the window below its ``before`` id. When that window holds too few matches
the page says how far back it searched (``JobPage.searched_to``), and the next page starts
there. A tag or a workflow drives the walk through its own index (``job_tags_tag``,
``jobs_workflow``), a state with a partial index (queued, scheduled, running) through that one
when it holds few jobs, so a rare tag, run or state is found without any scan.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from litejobs.job import State
from litejobs.store.connections import Connections
from litejobs.store.rows import Row, _like_prefix

__all__ = ["GRAPH_STEPS", "PAGE_SCAN", "JobFilter", "JobPage", "StoreViews"]

#: Rows (or index entries of the tag or run) a page looks at, at most.
PAGE_SCAN = 50_000
#: Jobs in partial-index states below which a page reads them through their indexes.
STATE_EXACT = 5_000
#: Steps of a workflow drawn as a graph; a bigger run is listed instead.
GRAPH_STEPS = 300

# The states whose partial index holds only their jobs, by index.
_STATE_INDEX = {"queued": "jobs_queued", "scheduled": "jobs_scheduled",
                "running": "jobs_running"}

# The columns of a row of the jobs table: no args, kwargs or result (they may be large, and
# the list shows none of them); the error's first 300 characters.
PAGE_COLUMNS = ("id, task, queue, state, attempt, max_attempts, created_at, run_at, "
                "started_at, finished_at, progress, progress_message, "
                "substr(error, 1, 300) AS error, tags, workflow")
TOP_ID = "SELECT coalesce(max(id), 0) AS id FROM jobs"
# Is there anything below a page's window (for "searched back to job N")?
OLDER_JOB = "SELECT 1 FROM jobs WHERE id < ? LIMIT 1"
OLDER_TAGGED = "SELECT 1 FROM job_tags WHERE tag = ? AND job_id < ? LIMIT 1"
OLDER_STEP = "SELECT 1 FROM jobs WHERE workflow = ? AND id < ? LIMIT 1"
# Each filter as a clause on jobs' own columns.
TASK_IS = "task = ?"
QUEUE_IS = "queue = ?"
WORKFLOW_IS = "workflow = ?"
HAS_TAG = "id IN (SELECT job_id FROM job_tags WHERE tag = ?)"
CREATED_SINCE = "created_at >= ?"
CREATED_UNTIL = "created_at < ?"
# Stored arguments are JSON (UTF-8, not escaped): a needle is looked for as typed and as
# JSON would write it inside a string (quotes, backslashes). Case-insensitive for ASCII.
TEXT_IN = ("(args LIKE ? ESCAPE '\\' OR kwargs LIKE ? ESCAPE '\\' "
           "OR error LIKE ? ESCAPE '\\')")
# The window of a driving index: the id of the ``scan``-th entry below ``before`` (none: the
# index holds fewer, and the page reads them all).
TAG_FLOOR = ("SELECT job_id AS id FROM job_tags WHERE tag = ? AND job_id < ? "
             "ORDER BY job_id DESC LIMIT 1 OFFSET ?")
WORKFLOW_FLOOR = ("SELECT id FROM jobs WHERE workflow = ? AND id < ? "
                  "ORDER BY id DESC LIMIT 1 OFFSET ?")
# Jobs in one state with a partial index, counted up to a cap through that index.
STATE_COUNT = ("SELECT count(*) AS n FROM (SELECT 1 FROM jobs INDEXED BY {index} "
               "WHERE state = '{state}' LIMIT ?)")
STATE_IDS = "SELECT id FROM jobs INDEXED BY {index} WHERE state = '{state}'"
COUNT = "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE {where} LIMIT ?)"
PAGE = "SELECT {columns} FROM jobs WHERE {where} ORDER BY id DESC LIMIT ?"
# A tag drives its pages through job_tags' (tag, job_id) index, newest first.
TAG_PAGE = ("SELECT {columns} FROM job_tags t JOIN jobs ON jobs.id = t.job_id "
            "WHERE t.tag = ? AND t.job_id < ? AND t.job_id >= ? AND {where} "
            "ORDER BY t.job_id DESC LIMIT ?")
IDS_PAGE = "SELECT id FROM jobs WHERE {where} AND id > ? AND id <= ? ORDER BY id LIMIT ?"
# ... and a bulk action's pages, in id order.
TAG_IDS_PAGE = ("SELECT jobs.id FROM job_tags t JOIN jobs ON jobs.id = t.job_id "
                "WHERE t.tag = ? AND t.job_id > ? AND t.job_id <= ? AND {where} "
                "ORDER BY t.job_id LIMIT ?")
GRAPH_NODES = ("SELECT id, task, state, continuation FROM jobs WHERE workflow = ? "
               "ORDER BY id LIMIT ?")
GRAPH_SIZE = "SELECT count(*) AS n FROM jobs WHERE workflow = ?"
GRAPH_EDGES = ("SELECT d.upstream, d.job_id FROM jobs j JOIN job_deps d ON d.job_id = j.id "
               "WHERE j.workflow = ? ORDER BY d.job_id, d.position")


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a list shows; every field given must match (``states``: any of them;
    ``tag``: one of the job's; ``text``: in the arguments or the error; ``since``/``until``:
    the creation time, unix seconds, ``until`` excluded)."""

    states: tuple[str, ...] = ()
    task: str | None = None
    queue: str | None = None
    tag: str | None = None
    workflow: int | None = None
    text: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        known = {s.value for s in State}
        bad = [s for s in self.states if s not in known]
        if bad:
            raise ValueError(f"unknown state {bad[0]!r}; the states are "
                             f"{', '.join(s.value for s in State)}")

    def narrowed(self, states: Sequence[str]) -> JobFilter:
        """The filter limited to ``states`` (all of them when it names none): what a bulk
        action may touch."""
        keep = tuple(s for s in (self.states or tuple(states)) if s in states)
        return JobFilter(keep, self.task, self.queue, self.tag, self.workflow, self.text,
                         self.since, self.until)


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of jobs, newest first. ``older``: the ``before`` of the next page (None: no
    older match). ``searched_to``: the scan stopped at this id with the page not full; older
    jobs were not looked at (the next page, ``before=searched_to``, goes on from there)."""

    rows: list[Row] = field(default_factory=list)
    older: int | None = None
    searched_to: int | None = None


def _where(f: JobFilter, skip_tag: bool = False) -> tuple[str, list[Any]]:
    """The filter as clauses on jobs' columns (joined with AND) and their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if f.states:
        # literals, not parameters: a partial index serves only a query naming its state
        clauses.append("state IN (" + ", ".join(f"'{State(s).value}'" for s in f.states) + ")")
    for clause, value in ((TASK_IS, f.task), (QUEUE_IS, f.queue), (WORKFLOW_IS, f.workflow),
                          (CREATED_SINCE, f.since), (CREATED_UNTIL, f.until)):
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
    return " AND ".join(clauses) or "1", params


class StoreViews(Connections):
    """The dashboard's reads of Store (see protocols.Reads)."""

    def top_job_id(self) -> int:
        """The highest job id now (0 for none): a bulk action touches no job above it."""
        return int(self._read(TOP_ID)[0]["id"])

    def job_page(self, f: JobFilter, before: int | None = None, limit: int = 50,
                 scan: int = PAGE_SCAN) -> JobPage:
        """The newest ``limit`` jobs matching ``f`` with an id below ``before`` (None: from
        the newest), looking at ``scan`` rows at most (see the module's docstring)."""
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
                where += " AND id IN (" + " UNION ALL ".join(
                    STATE_IDS.format(index=_STATE_INDEX[s], state=s) for s in f.states) + ")"
                floor = None
            else:
                floor = top - scan if top - scan > 1 else None
            where += " AND id < ? AND id >= ?"
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
        if not states or any(s not in _STATE_INDEX for s in states):
            return False
        total = 0
        for s in states:
            total += int(self._read(STATE_COUNT.format(index=_STATE_INDEX[s], state=s),
                                    (STATE_EXACT + 1,))[0]["n"])
        return total <= STATE_EXACT

    def count_jobs(self, f: JobFilter, cap: int = 10_000) -> int:
        """How many jobs match ``f``, counted up to ``cap + 1`` (more than ``cap``: the
        count is ``cap + 1``). Walks the jobs no index serves: for a bulk action's
        confirmation, not for every page."""
        where, params = _where(f)
        return int(self._read(COUNT.format(where=where), [*params, cap + 1])[0]["n"])

    def ids_for(self, f: JobFilter, after_id: int, upto: int, limit: int = 1000) -> list[int]:
        """One page of the ids matching ``f`` in (after_id, upto], in id order: a bulk
        action's batches (``upto``: the top id when it was confirmed, so a job created since
        is not touched)."""
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
