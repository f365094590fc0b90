"""Group commit for ``POST /api/v1/jobs``: the jobs of requests that arrive while a write is
in flight are inserted together, in the next transaction.

SQLite takes one write at a time, so concurrent requests would queue on its lock anyway; here
they queue in memory instead, and each transaction (and, with durability "full", each fsync)
serves every request that waited for it. A request is validated and encoded on its own
first (``app.build_job``): a bad one is refused alone and never fails the others. The write
runs in a worker thread, so the event loop keeps serving while SQLite waits for its lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.calls import ring_for
from litejobs.store.inserts import NewRow

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.newjob import NewJob

__all__ = ["Batcher"]

#: Jobs one transaction takes at most; the rest wait for the next one.
MOST = 500


class Batcher:
    """Inserts the jobs handed to ``insert`` in as few transactions as the load allows."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.pending: list[tuple[NewJob, asyncio.Future[tuple[Mapping[str, Any], bool]]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def insert(self, job: NewJob) -> tuple[Mapping[str, Any], bool]:
        """The job's row once committed, and whether it is new (False: the live job of its
        key, made before)."""
        future: asyncio.Future[tuple[Mapping[str, Any], bool]] = (
            asyncio.get_running_loop().create_future())
        self.pending.append((job, future))
        if self.flusher is None or self.flusher.done():  # done: its loop was stopped
            self.flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        from starlette.concurrency import run_in_threadpool

        try:
            while self.pending:
                batch, self.pending = self.pending[:MOST], self.pending[MOST:]
                try:
                    rows = await run_in_threadpool(self._write, [j for j, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), row in zip(batch, rows, strict=True):
                    # Both stores hand back a NewRow for a job this insert made and the row
                    # read from the table for a live twin (made before, or earlier in this
                    # batch: two requests of one key). Not created_at == now: on PostgreSQL
                    # created_at is the server's clock, never this host's now.
                    new = isinstance(row, NewRow)
                    if not future.done():  # its client may have gone
                        future.set_result((row, new))
        finally:
            self.flusher = None

    def _write(self, jobs: Sequence[NewJob]) -> list[Mapping[str, Any]]:
        now = time.time()
        rows = self.app.store.insert_jobs(jobs, now)
        self.app.ring_inserted(ring_for(jobs, now))
        return rows
