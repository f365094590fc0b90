"""Moving a store from a SQLite file to PostgreSQL (``litejobs migrate-store SRC DST``): the
plan and its rules; the reads are ``store.export``, the writes ``store.postgres.restore``.

The rules, as an operator expects of a move (pgloader, Oban's migrations):

- Nothing runs. A supervisor still alive on the file (on this host its process exists;
  elsewhere its heartbeat is within ``max(15 s, lease)``, the rescue's own rule) stops the
  move before anything is written: its jobs would change after they were copied.
- The file is left as it was: it is read in one read transaction on a read-only connection.
  A commit to it by anyone during the copy (a producer still enqueueing) rolls the copy back.
- The destination must be empty, and is never overwritten. The whole copy is one transaction
  there: after an error, or a failed check, it holds nothing of it.
- Every job keeps its id; the identity sequences start past the highest id the file ever gave.
- Checked before the commit: every table's count, and a checksum of the jobs' ids and states.
- Running jobs (their supervisor was killed, or the move would have stopped) are moved as
  queued, with their attempt recorded as ``interrupted`` and not counted, as a drain whose
  grace ran out records it. Not refused: the supervisor is gone, so nothing else would
  ever return them, and the attempt's fate is unknown either way; run again, as a rescue
  would run them, but without the crash a rescue counts, since the operator stopped it.
- Parked jobs are moved unparked (a PostgreSQL claim looks at each afresh and parks them
  again while their key is full), and so flow keys' waits (``flow_waits``) are not moved;
  starts not yet known (``rate_starts``/``flow_starts`` rows of a job sent ahead) are moved
  and count from the move, as a drain counts a stopped job's (every job they belong to is
  stopped now).
  Supervisors' heartbeat rows are not moved: they describe processes of the old store.
- PostgreSQL to SQLite is not a direction this command knows.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litejobs.errors import LitejobsError, StorageError
from litejobs.maintenance import _gone
from litejobs.store.export import SqliteExport
from litejobs.store.tx import pid_namespace

if TYPE_CHECKING:
    from litejobs.store.postgres.restore import PgRestore

__all__ = ["MOVED", "NOT_MOVED", "MoveRefused", "MoveReport", "Progress", "check_direction",
           "migrate_store"]

#: The tables moved, in an order their foreign keys accept.
MOVED = ("jobs", "job_tags", "workflows", "job_deps", "attempts", "queues", "cron_entries",
         "cron_fires", "schedules", "rate_starts", "flow_starts", "metric_minutes",
         "metric_totals")
#: The tables left behind, and why (said in the report).
NOT_MOVED = {
    "supervisors": "heartbeats of the old store's processes",
    "job_ids": "the highest id given: the new store's sequence starts past it",
    "flow_waits": "flow keys' waits: the new store's claims count the moved starts afresh",
}
#: Columns of the file the new store does not have, and why their values may go (none since
#: the PostgreSQL schema 2 took the windows' ``job_id``).
DROPPED_COLUMNS: dict[tuple[str, str], str] = {}
INTERRUPTED = ("its supervisor had stopped while it ran; moved to PostgreSQL by litejobs "
               "migrate-store and returned to queued, not counted as an attempt")
#: Rows between two looks at the clock for the progress line.
EVERY = 4096


class MoveRefused(LitejobsError):
    """The move cannot start, or did not pass its checks; nothing was written anywhere."""


@dataclass(frozen=True)
class Progress:
    """How far a move is: ``done`` of ``total`` rows after ``seconds``, now in ``table``."""

    done: int
    total: int
    seconds: float
    table: str

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


@dataclass
class MoveReport:
    """What a move did (or, with ``dry_run``, would do)."""

    source: str
    destination: str
    dry_run: bool
    #: table -> rows in the file
    source_rows: dict[str, int] = field(default_factory=dict)
    #: table -> rows written (after the checks, equal to the rows the destination holds)
    copied: dict[str, int] = field(default_factory=dict)
    requeued: list[int] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    #: attempts written for the requeued jobs (their attempt recorded as interrupted)
    interrupted: int = 0
    checksum: str = ""
    seconds: float = 0.0
    #: the destination's rows per table before a dry run (None: no litejobs schema yet)
    destination_rows: dict[str, int] | None = None

    @property
    def rows(self) -> int:
        return sum(self.copied.values())


def check_direction(source: str, url: str) -> None:
    if source.startswith(("postgresql://", "postgres://")):
        raise MoveRefused("migrate-store moves a SQLite file to PostgreSQL; moving from "
                          "PostgreSQL to SQLite is not supported")
    if url.startswith(("postgresql://", "postgres://")):
        return
    raise MoveRefused(f"the destination must be a postgresql:// URL, not {url!r}: migrate-store "
                      "moves a SQLite file to PostgreSQL (not the other way)")


def alive_supervisors(export: SqliteExport, now: float, lease: float) -> list[str]:
    """The supervisors of the file that may still be running, each in a few words."""
    host, ns = socket.gethostname(), pid_namespace()
    return [f"{s['id']} (pid {s['pid']} on {s['hostname']})"
            for s in export.supervisors() if _gone(s, now, host, ns, lease) is None]


def _plan(export: SqliteExport, restore_columns: Callable[[str], list[str]] | None,
          ) -> dict[str, list[str]]:
    """The columns to move of each table; refuses a table or column it cannot place."""
    tables = set(export.tables())
    unknown = sorted(tables - set(MOVED) - set(NOT_MOVED))
    if unknown:
        raise MoveRefused(f"{export.path} has table(s) this litejobs cannot move: "
                          f"{', '.join(unknown)}; upgrade litejobs")
    plan: dict[str, list[str]] = {}
    for table in (t for t in MOVED if t in tables):
        columns = export.columns(table)
        if restore_columns is not None:
            there = set(restore_columns(table))
            for col in [c for c in columns if c not in there]:
                if (table, col) not in DROPPED_COLUMNS and export.count(table, col):
                    raise MoveRefused(
                        f"column {table}.{col} of {export.path} has values the PostgreSQL "
                        "store has no place for; upgrade litejobs")
            columns = [c for c in columns if c in there]
        plan[table] = columns
    return plan


class _Mover:
    """One copy, row by row: what becomes of each row, the counts, the checksum, progress."""

    def __init__(self, export: SqliteExport, restore: PgRestore, report: MoveReport,
                 now: float, progress: Callable[[Progress], None] | None) -> None:
        self.export, self.restore, self.report, self.now = export, restore, report, now
        self.progress = progress
        self.total = sum(report.source_rows.get(t, 0) for t in MOVED)
        self.done = 0
        self.started = time.monotonic()
        self.next_report = self.started  # the first batch reports: the move has begun
        self.digest = hashlib.md5(usedforsecurity=False)
        # (job id, attempt, worker, started_at) of each running job returned to queued
        self.running: list[tuple[int, int, Any, Any]] = []
        self.recorded: set[tuple[int, int]] = set()  # their attempts the file already has

    def run(self, plan: dict[str, list[str]]) -> None:
        for table, columns in plan.items():
            rows = self.export.rows(table, self._source_columns(table, columns))
            self.report.copied[table] = self._copy(table, columns, self._rows(table, columns,
                                                                               rows))
            if table == "attempts":
                self._record_interrupted()
        self.report.checksum = self.digest.hexdigest()

    def _source_columns(self, table: str, columns: list[str]) -> list[str]:
        # rate/flow starts: their job_id too, to leave out those of requeued jobs
        if (table in ("rate_starts", "flow_starts") and "job_id" not in columns
                and "job_id" in self.export.columns(table)):
            return [*columns, "job_id"]  # read last, whether or not it is moved
        return columns

    def _rows(self, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]],
              ) -> Iterator[tuple[Any, ...]]:
        if table == "jobs":
            yield from self._jobs(columns, rows)
        elif table == "attempts":
            ids = {r[0] for r in self.running}
            for row in rows:
                if row[0] in ids:
                    self.recorded.add((row[0], row[1]))
                yield row
        elif len(columns) < len(self._source_columns(table, columns)):
            for row in rows:
                if row[-1] is None:
                    yield row[:-1]
                else:
                    self.report.dropped[table] = self.report.dropped.get(table, 0) + 1
        else:
            yield from rows

    def _jobs(self, columns: list[str], rows: Iterable[tuple[Any, ...]],
              ) -> Iterator[tuple[Any, ...]]:
        at = {c: i for i, c in enumerate(columns)}
        i_id, i_state, i_parked = at["id"], at["state"], at.get("parked")
        update, sep = self.digest.update, ""
        for row in rows:
            if row[i_state] == "running" or (i_parked is not None and row[i_parked]):
                row = self._job(at, row)
            update(f"{sep}{row[i_id]}:{row[i_state]}".encode())
            sep = ","
            yield row

    def _job(self, at: dict[str, int], row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(row)
        if "parked" in at:
            out[at["parked"]] = False
        if row[at["state"]] == "running":
            self.running.append((row[at["id"]], row[at["attempt"]], row[at["leased_by"]],
                                 row[at["started_at"]]))
            self.report.requeued.append(int(row[at["id"]]))
            out[at["state"]] = "queued"
            out[at["run_at"]] = self.now
            out[at["interrupts"]] += 1
            out[at["leased_by"]] = out[at["lease_until"]] = None
        return tuple(out)

    def _record_interrupted(self) -> None:
        rows = [(job_id, attempt, "interrupted", worker, started, self.now, INTERRUPTED, None)
                for job_id, attempt, worker, started in self.running
                if (job_id, attempt) not in self.recorded]
        if rows:
            columns = ["job_id", "attempt", "outcome", "worker", "started_at", "finished_at",
                       "error", "traceback"]
            self.report.copied["attempts"] += self._copy("attempts", columns, iter(rows))
        self.report.interrupted = len(rows)

    def _copy(self, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
        n = 0
        with self.restore.copy(table, columns) as copy:
            write = copy.write_row
            for row in rows:
                write(row)
                n += 1
                if n % EVERY == 0:
                    self._tick(table, n)
        self.done += n % EVERY
        return n

    def _tick(self, table: str, n: int) -> None:
        self.done += EVERY
        now = time.monotonic()
        if self.progress is not None and now >= self.next_report:
            self.next_report = now + 1.0
            self.progress(Progress(self.done, self.total, now - self.started, table))


def migrate_store(source: str, url: str, *, lease: float = 30.0, dry_run: bool = False,
                  progress: Callable[[Progress], None] | None = None) -> MoveReport:
    """Copy every job and the rest of the store from the SQLite file ``source`` into the
    empty PostgreSQL store at ``url``, in one transaction there, checked before its commit.
    ``source`` is only read. MoveRefused or StorageError (one line) when it cannot."""
    check_direction(source, url)
    from litejobs.store.postgres.connections import redacted

    began = time.monotonic()
    export = SqliteExport(source)
    try:
        export.snapshot()
        alive = alive_supervisors(export, time.time(), lease)
        if alive:
            raise MoveRefused(
                f"{len(alive)} supervisor(s) still run on {source}: {', '.join(alive)}. Stop "
                "them (and every process that enqueues), then run migrate-store again")
        report = MoveReport(source, redacted(url), dry_run)
        if dry_run:
            plan = _plan(export, None)
            report.source_rows = {t: export.count(t) for t in plan}
            from litejobs.store.postgres.restore import peek

            report.destination_rows = peek(url)
            return report
        _move(export, url, report, progress)
        report.seconds = time.monotonic() - began
        return report
    finally:
        export.close()


def _move(export: SqliteExport, url: str, report: MoveReport,
          progress: Callable[[Progress], None] | None) -> None:
    from litejobs.store.postgres import PostgresStore
    from litejobs.store.postgres.restore import PgRestore, reachable

    reachable(url)
    store = PostgresStore(url, min_size=1, max_size=1)

    def fill(conn: Any) -> None:
        report.copied.clear()
        report.requeued.clear()
        report.dropped.clear()
        report.interrupted = 0
        restore = PgRestore(conn, report.destination)
        tables = restore.tables()
        restore.lock(tables)
        there = {t: n for t, n in restore.counts(tables).items() if n}
        if there:
            held = ", ".join(f"{n} {t}" for t, n in sorted(there.items()))
            raise MoveRefused(
                f"the store at {report.destination} is not empty ({held}): migrate-store "
                "writes into an empty one only and never overwrites. Use a new database, or "
                "a schema of its own (?options=-csearch_path%3Dname)")
        plan = _plan(export, restore.columns)
        report.source_rows = {t: export.count(t) for t in plan}
        mover = _Mover(export, restore, report, time.time(), progress)
        mover.run(plan)
        restore.settle_unknown_starts()
        for table, top in export.tops().items():
            restore.set_top(table, top)
        _verify(restore, report)
        if export.changed():
            raise MoveRefused(
                f"{export.path} changed during the copy (a process wrote to it): stop every "
                "process that uses it, then run migrate-store again; nothing was committed")

    try:
        store._transaction(fill)
    finally:
        store.close()


def _verify(restore: PgRestore, report: MoveReport) -> None:
    """Counts per table and the jobs' checksum, read back inside the transaction."""
    counts = restore.counts(list(report.copied))
    for table, sent in report.copied.items():
        expected = (report.source_rows.get(table, 0) - report.dropped.get(table, 0)
                    + (report.interrupted if table == "attempts" else 0))
        if not counts[table] == sent == expected:
            raise StorageError(
                f"check failed: table {table} holds {counts[table]} rows at {report.destination}"
                f" after the copy, {sent} were sent, the file has {report.source_rows.get(table)}"
                "; nothing was committed")
    if restore.jobs_checksum() != report.checksum:
        raise StorageError(f"check failed: the jobs' ids and states at {report.destination} "
                           "differ from the file's; nothing was committed")
