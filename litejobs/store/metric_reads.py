"""The metrics' reads of ``Store``: figures, job counts, the oldest ready job, workers, and
the facts ``litejobs health`` judges. Their statements live in ``litejobs.store.metrics``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import apsw

from litejobs.errors import StorageError
from litejobs.store.connections import Connections
from litejobs.store.failures import STORAGE_ERRORS, stale_wal_at, storage_error
from litejobs.store.metrics import (
    LIVE_COUNTS,
    LIVE_SUPERVISORS,
    LONG_EXPIRED_LEASES,
    METRIC_TOTALS,
    NEWEST_HEARTBEAT,
    OLDEST_READY,
    OUTCOME_MINUTES,
    TERMINAL_COUNTS,
    WORKERS,
)
from litejobs.store.rows import Row, _scalar
from litejobs.store.schema import APPLICATION_ID, IDENTITY, SCHEMA_VERSION

__all__ = ["StoreMetrics"]

T = TypeVar("T")


class _Cached(Generic[T]):
    """A read whose answer is kept for ``factor`` times what computing it last cost (at most
    ``longest`` seconds): on a small file that is milliseconds, so it is as good as exact; at a
    million rows, a 0.3 s count is reused for up to ``longest`` s, so reading it costs a web
    process about 1/``factor`` of a core whatever the page polls. A look that cost more than
    ``INLINE`` s is done again on a thread of its own while callers get the previous answer, so
    no request waits for it after the first."""

    INLINE = 0.02

    def __init__(self, compute: Callable[[], T], factor: float, longest: float) -> None:
        self.compute = compute
        self.factor = factor
        self.longest = longest
        self.value: T | None = None
        self.until = 0.0  # monotonic: good until then
        self.cost = 0.0
        self.lock = threading.Lock()
        self.refreshing = False

    def get(self) -> T:
        value = self.value
        if value is not None and time.monotonic() < self.until:
            return value
        if value is None or self.cost < self.INLINE:
            return self._refresh()
        with self.lock:
            if self.refreshing:
                return value
            self.refreshing = True
        threading.Thread(target=self._background, name="litejobs-counts", daemon=True).start()
        return value

    def _refresh(self) -> T:
        start = time.monotonic()
        value = self.compute()
        end = time.monotonic()
        self.value = value
        self.cost = end - start
        self.until = end + min(self.longest, self.cost * self.factor)
        return value

    def _background(self) -> None:
        try:
            self._refresh()
        except StorageError:
            pass  # the next caller tries again
        finally:
            self.refreshing = False


class StoreMetrics(Connections):
    """The metrics' reads of Store (see protocols.Reads and protocols.Maintenance)."""

    def outcome_minutes(self, since: float) -> list[tuple[int, str, float]]:
        """(minute, outcome, count over every task) of each minute from ``since`` (unix
        time) on, oldest first; minutes with nothing are left out."""
        rows = self._rows(OUTCOME_MINUTES, (int(since // 60),))
        return [(int(m), str(k), float(v)) for m, k, v in rows]

    def metric_totals(self) -> list[tuple[str, str, str, float]]:
        """Every (name, label, kind, value) counted since the file was made."""
        return [(str(n), str(label), str(k), float(v))
                for n, label, k, v in self._rows(METRIC_TOTALS)]

    def job_counts(self) -> dict[tuple[str, str], int]:
        """``{(queue, state): count}`` of every state with a job. Live states are counted
        through their partial indexes (~80 ms for a million queued jobs), cached for 50 times
        what that cost (at most 5 s); the terminal ones need a look at every row (~0.4 s at a
        million jobs), cached for 100 times its cost (at most a minute). Both are refreshed in
        the background once they cost over 20 ms: see ``_Cached``."""
        live = self._cache("_live_counts", lambda: self._counts(LIVE_COUNTS), 50.0, 5.0)
        terminal = self._cache("_terminal_counts", lambda: self._counts(TERMINAL_COUNTS),
                               100.0, 60.0)
        return {**live.get(), **terminal.get()}

    def oldest_ready(self, now: float | None = None) -> dict[str, float]:
        """``{queue: seconds}``: how long the oldest ready (queued) job of each queue has
        been due. Cached like the live counts of ``job_counts``."""
        now = time.time() if now is None else now
        heads = self._cache("_oldest_ready", lambda: {str(q): float(t) for q, t in
                                                       self._rows(OLDEST_READY)}, 50.0, 5.0)
        return {q: max(0.0, now - t) for q, t in heads.get().items()}

    def workers(self) -> list[Row]:
        """Every worker of every supervisor row, as its last heartbeat wrote it, with the
        supervisor's ``supervisor`` id, ``hostname`` and ``heartbeat_at``."""
        return self._read(WORKERS)

    def health_facts(self, now: float, max_age: float, lease: float) -> Row:
        """What ``litejobs health`` judges, read on a read-only connection (nothing is
        written, no schema is upgraded): ``application_id``, ``schema_version``,
        ``supervisors`` (heartbeat within ``max_age``), ``newest_heartbeat`` (None without any
        supervisor row), ``expired_leases`` (running jobs whose lease ended over a ``lease``
        ago). Raises StorageError for a file that cannot be read."""
        stale = stale_wal_at(self.path)  # opening the file would replay that WAL
        if stale is not None:
            raise StorageError(stale)
        conn = self._read_only()
        try:
            row = conn.execute(IDENTITY).fetchone()
            app_id, version, _ = row if row is not None else (0, 0, 0)
            facts: Row = {"application_id": int(app_id), "schema_version": int(version),
                          "supervisors": 0, "newest_heartbeat": None, "expired_leases": 0}
            if app_id != APPLICATION_ID or version != SCHEMA_VERSION:
                return facts
            facts["supervisors"] = int(_scalar(conn, LIVE_SUPERVISORS, (now - max_age,)))
            facts["newest_heartbeat"] = _scalar(conn, NEWEST_HEARTBEAT)
            facts["expired_leases"] = int(_scalar(conn, LONG_EXPIRED_LEASES, (now - lease,)))
            return facts
        except apsw.Error as exc:
            raise storage_error(self.path, exc) from None
        finally:
            conn.close()

    # --- helpers -------------------------------------------------------------------------------

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in self.connection().execute(statement, params)]
        except STORAGE_ERRORS as exc:
            raise storage_error(self.path, exc) from None

    def _counts(self, statement: str) -> dict[tuple[str, str], int]:
        return {(str(q), str(s)): int(n) for q, s, n in self._rows(statement)}

    def _cache(self, name: str, compute: Callable[[], T], factor: float, longest: float,
               ) -> _Cached[T]:
        cached: _Cached[T] | None = self.__dict__.get(name)
        if cached is None:
            with self._lock:
                cached = self.__dict__.get(name)
                if cached is None:
                    cached = _Cached(compute, factor, longest)
                    self.__dict__[name] = cached
        return cached
