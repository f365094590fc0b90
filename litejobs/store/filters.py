"""``list_jobs``, written once for both stores: jobs newest first, each filter given a clause
on jobs' own columns. The store gives its placeholder ("?" or "%s"). Nothing here writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from litejobs.store.sql import HAS_TAG, JOB_COLUMNS

if TYPE_CHECKING:
    from litejobs.store.rows import Row

__all__ = ["JobLists"]

# Written with "?"; JobLists puts in the store's placeholder.
LIST_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs {{where}} ORDER BY id DESC LIMIT ?"


class JobLists:
    """The store's ``list_jobs`` (see protocols.Reads), on its ``_read``."""

    #: The store's placeholder of a parameter.
    placeholder: ClassVar[str]

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

    def list_jobs(self, state: str | None = None, task: str | None = None,
                  queue: str | None = None, limit: int = 100,
                  tag: str | None = None, workflow: int | None = None) -> list[Row]:
        """Jobs newest first; each filter given must match (``tag``: one of the job's)."""
        mark = self.placeholder
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("task", task), ("queue", queue),
                              ("workflow", workflow)):
            if value is not None:
                clauses.append(f"{column} = {mark}")
                params.append(value)
        if tag is not None:
            # driven by job_tags' (tag, job_id) index: a rare tag is found without a scan
            clauses.append(HAS_TAG.replace("?", mark))
            params.append(tag)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        return self._read(LIST_JOBS.format(where=where).replace("?", mark), params)
