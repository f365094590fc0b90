"""The dashboard's reads of jobs, written once for both stores: a filter, keyset pages newest
first whose scan is bounded, a capped count, the ids a bulk action pages through, and a
workflow's graph. Nothing here writes.

A filter no index serves walks the jobs newest first, and a page looks at most at ``scan``
rows of the window below its ``before`` id. When that window holds too few matches the page
says how far back it searched (``JobPage.searched_to``), and the next page starts there. A
tag or a workflow drives the walk through its own index (``job_tags_tag``,
``jobs_workflow``), a state with a partial index (queued, scheduled, running) through that one
when it holds few jobs, so a rare tag, run or state is found without any scan.

Each store's mixin (``views``, ``postgres/views``) gives what differs between the dialects:
its statements (``PageSQL``: the placeholder and the text match), how a state filter is
written (``_states_clause``) and when a state's partial index narrows a page
(``_state_narrowing``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from litejobs.job import State
from litejobs.store.rows import Row, _like_prefix
from litejobs.store.sql import HAS_TAG

__all__ = ["GRAPH_STEPS", "PAGE_COLUMNS", "PAGE_SCAN", "JobFilter", "JobPage", "JobPages",
           "PageSQL", "few_in_states"]

#: Rows (or index entries of the tag or run) a page looks at, at most.
PAGE_SCAN = 50_000
#: Steps of a workflow drawn as a graph; a bigger run is listed instead.
GRAPH_STEPS = 300

# The columns of a row of the jobs table: no args, kwargs or result (they may be large, and
# the list shows none of them); the error's first 300 characters.
PAGE_COLUMNS = ("id, task, queue, state, attempt, max_attempts, created_at, run_at, "
                "started_at, finished_at, progress, progress_message, "
                "substr(error, 1, 300) AS error, tags, workflow")

# The statements both dialects share, written with SQLite's "?"; PageSQL.of puts in a
# dialect's own placeholder.
_SHARED = {
    "top_id": "SELECT coalesce(max(id), 0) AS id FROM jobs",
    # Is there anything below a page's window (for "searched back to job N")?
    "older_job": "SELECT 1 FROM jobs WHERE id < ? LIMIT 1",
    "older_tagged": "SELECT 1 FROM job_tags WHERE tag = ? AND job_id < ? LIMIT 1",
    "older_step": "SELECT 1 FROM jobs WHERE workflow = ? AND id < ? LIMIT 1",
    # Each filter as a clause on jobs' own columns.
    "task_is": "task = ?",
    "queue_is": "queue = ?",
    "workflow_is": "workflow = ?",
    "has_tag": HAS_TAG,
    "created_since": "created_at >= ?",
    "created_until": "created_at < ?",
    # A page's window of ids: below ``before``, down to the floor.
    "window": " AND id < ? AND id >= ?",
    # The window of a driving index: the id of the ``scan``-th entry below ``before`` (none:
    # the index holds fewer, and the page reads them all).
    "tag_floor": ("SELECT job_id AS id FROM job_tags WHERE tag = ? AND job_id < ? "
                  "ORDER BY job_id DESC LIMIT 1 OFFSET ?"),
    "workflow_floor": ("SELECT id FROM jobs WHERE workflow = ? AND id < ? "
                       "ORDER BY id DESC LIMIT 1 OFFSET ?"),
    "count": "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE {where} LIMIT ?) c",
    "page": "SELECT {columns} FROM jobs WHERE {where} ORDER BY id DESC LIMIT ?",
    # A tag drives its pages through job_tags' (tag, job_id) index, newest first ...
    "tag_page": ("SELECT {columns} FROM job_tags t JOIN jobs ON jobs.id = t.job_id "
                 "WHERE t.tag = ? AND t.job_id < ? AND t.job_id >= ? AND {where} "
                 "ORDER BY t.job_id DESC LIMIT ?"),
    "ids_page": "SELECT id FROM jobs WHERE {where} AND id > ? AND id <= ? ORDER BY id LIMIT ?",
    # ... and a bulk action's pages, in id order.
    "tag_ids_page": ("SELECT jobs.id FROM job_tags t JOIN jobs ON jobs.id = t.job_id "
                     "WHERE t.tag = ? AND t.job_id > ? AND t.job_id <= ? AND {where} "
                     "ORDER BY t.job_id LIMIT ?"),
    "graph_nodes": ("SELECT id, task, state, continuation FROM jobs WHERE workflow = ? "
                    "ORDER BY id LIMIT ?"),
    "graph_size": "SELECT count(*) AS n FROM jobs WHERE workflow = ?",
    "graph_edges": ("SELECT d.upstream, d.job_id FROM jobs j JOIN job_deps d "
                    "ON d.job_id = j.id WHERE j.workflow = ? ORDER BY d.job_id, d.position"),
}


@dataclass(frozen=True, slots=True)
class PageSQL:
    """The job pages' statements in one dialect (see ``_SHARED`` for what each one is), and
    ``text_in``: a text needle looked for in args, kwargs and error (three parameters)."""

    text_in: str
    top_id: str
    older_job: str
    older_tagged: str
    older_step: str
    task_is: str
    queue_is: str
    workflow_is: str
    has_tag: str
    created_since: str
    created_until: str
    window: str
    tag_floor: str
    workflow_floor: str
    count: str
    page: str
    tag_page: str
    ids_page: str
    tag_ids_page: str
    graph_nodes: str
    graph_size: str
    graph_edges: str

    @classmethod
    def of(cls, placeholder: str, text_in: str) -> PageSQL:
        """The statements with ``placeholder`` ("?" or "%s") for each parameter."""
        return cls(text_in, **{name: statement.replace("?", placeholder)
                               for name, statement in _SHARED.items()})


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


def few_in_states(states: Sequence[str], indexed: Collection[str],
                  count: Callable[[str, int], int], exact: int) -> bool:
    """Whether ``states`` all have a partial index and hold ``exact`` jobs or fewer together
    (``count(state, cap)``: the jobs in one state, counted up to ``cap``)."""
    if not states or any(s not in indexed for s in states):
        return False
    return sum(count(s, exact + 1) for s in states) <= exact


class JobPages:
    """The dashboard's reads of jobs (see protocols.Reads), on the store's ``_read``."""

    #: The store's dialect of the statements.
    page_sql: ClassVar[PageSQL]

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

    def _states_clause(self, states: Sequence[str]) -> tuple[str, list[Any]]:
        """A state filter (``states`` not empty) as a clause and its parameters."""
        raise NotImplementedError

    def _state_narrowing(self, states: Sequence[str]) -> str | None:
        """A clause (``AND ...``, or "") that reads a page of ``states`` through their
        partial indexes without a window; None when they hold too many jobs for that."""
        raise NotImplementedError

    def _where(self, f: JobFilter, skip_tag: bool = False) -> tuple[str, list[Any]]:
        """The filter as clauses on jobs' columns (joined with AND) and their parameters."""
        q = self.page_sql
        clauses: list[str] = []
        params: list[Any] = []
        if f.states:
            clause, values = self._states_clause(f.states)
            clauses.append(clause)
            params += values
        for clause, value in ((q.task_is, f.task), (q.queue_is, f.queue),
                              (q.workflow_is, f.workflow), (q.created_since, f.since),
                              (q.created_until, f.until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if f.tag is not None and not skip_tag:
            clauses.append(q.has_tag)
            params.append(f.tag)
        if f.text:
            # Stored arguments are JSON (UTF-8, not escaped): a needle is looked for as typed
            # and as JSON would write it inside a string (quotes, backslashes).
            needles = [f.text]
            escaped = json.dumps(f.text, ensure_ascii=False)[1:-1]
            if escaped != f.text:
                needles.append(escaped)
            for needle in needles:
                params.extend(["%" + _like_prefix(needle)] * 3)
            clauses.append("(" + " OR ".join([q.text_in] * len(needles)) + ")")
        return " AND ".join(clauses) or "true", params

    def top_job_id(self) -> int:
        """The highest job id now (0 for none): a bulk action touches no job above it."""
        return int(self._read(self.page_sql.top_id)[0]["id"])

    def job_page(self, f: JobFilter, before: int | None = None, limit: int = 50,
                 scan: int = PAGE_SCAN) -> JobPage:
        """The newest ``limit`` jobs matching ``f`` with an id below ``before`` (None: from
        the newest), looking at ``scan`` rows at most (see the module's docstring)."""
        q = self.page_sql
        top = self.top_job_id() + 1 if before is None else before
        if top <= 1:
            return JobPage()
        floor: int | None
        older: tuple[str, tuple[Any, ...]] = (q.older_job, ())
        if f.tag is not None:
            floor = self._floor(q.tag_floor, (f.tag, top, scan - 1))
            older = (q.older_tagged, (f.tag,))
            where, params = self._where(f, skip_tag=True)
            statement = q.tag_page.format(columns=PAGE_COLUMNS, where=where)
            params = [f.tag, top, floor or 0, *params, limit + 1]
        else:
            where, params = self._where(f)
            if f.workflow is not None:
                floor = self._floor(q.workflow_floor, (f.workflow, top, scan - 1))
                older = (q.older_step, (f.workflow,))
            elif (narrowing := self._state_narrowing(f.states)) is not None:
                where += narrowing
                floor = None
            else:
                floor = top - scan if top - scan > 1 else None
            where += q.window
            params += [top, floor or 0, limit + 1]
            statement = q.page.format(columns=PAGE_COLUMNS, where=where)
        rows = self._read(statement, params)
        if len(rows) > limit:
            return JobPage(rows[:limit], older=int(rows[limit - 1]["id"]))
        if floor is not None and self._read(older[0], (*older[1], floor)):
            return JobPage(rows, searched_to=floor)
        return JobPage(rows)

    def _floor(self, statement: str, params: Sequence[Any]) -> int | None:
        rows = self._read(statement, params)
        return int(rows[0]["id"]) if rows else None

    def count_jobs(self, f: JobFilter, cap: int = 10_000) -> int:
        """How many jobs match ``f``, counted up to ``cap + 1`` (more than ``cap``: the
        count is ``cap + 1``). Walks the jobs no index serves: for a bulk action's
        confirmation, not for every page."""
        where, params = self._where(f)
        return int(self._read(self.page_sql.count.format(where=where),
                              [*params, cap + 1])[0]["n"])

    def ids_for(self, f: JobFilter, after_id: int, upto: int, limit: int = 1000) -> list[int]:
        """One page of the ids matching ``f`` in (after_id, upto], in id order: a bulk
        action's batches (``upto``: the top id when it was confirmed, so a job created since
        is not touched)."""
        if f.tag is not None:
            where, params = self._where(f, skip_tag=True)
            rows = self._read(self.page_sql.tag_ids_page.format(where=where),
                              [f.tag, after_id, upto, *params, limit])
        else:
            where, params = self._where(f)
            rows = self._read(self.page_sql.ids_page.format(where=where),
                              [*params, after_id, upto, limit])
        return [int(r["id"]) for r in rows]

    def workflow_graph(self, run_id: int, limit: int = GRAPH_STEPS,
                       ) -> tuple[list[Row], list[tuple[int, int]], int]:
        """A run's steps (id, task, state; oldest first), its edges (upstream, step) and how
        many steps it has; no steps nor edges when it has more than ``limit``."""
        q = self.page_sql
        size = int(self._read(q.graph_size, (run_id,))[0]["n"])
        if size > limit:
            return [], [], size
        nodes = self._read(q.graph_nodes, (run_id, limit))
        edges = [(int(r["upstream"]), int(r["job_id"]))
                 for r in self._read(q.graph_edges, (run_id,))]
        return nodes, edges, size
