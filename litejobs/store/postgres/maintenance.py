"""``Maintenance`` of the PostgreSQL store, with the SQLite store's meaning where it has one:
the facts ``litejobs doctor`` and ``health`` read (on the server's clock), the store's
identity checked without writing, and what only a file has, answered as "not applicable"
(``checkpoint``, ``wal_size``, ``file_changed``) or refused in one line (``backup_to``: the
server's own tools back it up)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litejobs.errors import StorageError
from litejobs.store.postgres import sql
from litejobs.store.postgres.schema import SCHEMA_VERSION
from litejobs.store.postgres.upkeep import SELECT_SUPERVISORS
from litejobs.store.rows import Row
from litejobs.store.schema import APPLICATION_ID

__all__ = ["PgMaintenanceMixin"]

NOW = sql.NOW
# The store's tables: a schema missing one was damaged by hand (quick_check names it).
TABLES = ("jobs", "job_tags", "workflows", "job_deps", "rate_starts", "attempts", "queues",
          "cron_entries", "cron_fires", "supervisors", "metric_minutes", "metric_totals",
          "schedules", "flow_starts", "flow_waits")
MISSING_TABLES = "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NULL"
# Rows the schema's checks cannot see: a waiting step with nothing to wait on.
STUCK_STEPS = """
SELECT count(*) AS n FROM jobs j WHERE j.state = 'waiting' AND j.task != 'litejobs.token'
  AND NOT EXISTS (SELECT 1 FROM job_deps d WHERE d.job_id = j.id)
"""
INSPECT = f"""
SELECT (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until < {NOW})
           AS expired_leases,
       (SELECT count(*) FROM jobs WHERE state = 'running') AS running,
       (SELECT min(run_at) FROM jobs WHERE state = 'queued') AS oldest_queued,
       (SELECT count(*) FROM jobs WHERE state = 'queued') AS queued
"""
# (max_age, lease): as the SQLite store's health facts, on the server's clock.
HEALTH = f"""
SELECT (SELECT count(*) FROM supervisors WHERE heartbeat_at >= {NOW} - %s) AS supervisors,
       (SELECT max(heartbeat_at) FROM supervisors) AS newest_heartbeat,
       (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until < {NOW} - %s)
           AS expired_leases
"""
IDENTITY = ("SELECT to_regclass('litejobs_meta') IS NOT NULL AS meta, "
            "to_regclass('jobs') IS NOT NULL AS jobs")


class PgMaintenanceMixin:
    """The maintenance operations of PostgresStore (see protocols.Maintenance)."""

    path: str
    url: str
    connect_timeout: float

    if TYPE_CHECKING:
        def _read(self, statement: str, params: Any = ()) -> list[Row]: ...

    def checkpoint(self, truncate: bool = False) -> tuple[int, int]:
        """Nothing to do: the server checkpoints its own WAL. ``(0, 0)``, an empty log."""
        return (0, 0)

    def wal_size(self) -> int:
        """0: the server's WAL is not this store's to watch (``pg_stat_wal`` is)."""
        return 0

    def file_changed(self) -> str | None:
        """None: a database on a server cannot be deleted or replaced under a path."""
        return None

    def quick_check(self) -> list[str]:
        """``[]`` when the store's tables are all there and no step waits on nothing; else
        the problems found."""
        problems = [f"table {r['t']} is missing"
                    for r in self._read(MISSING_TABLES, (list(TABLES),))]
        if not problems:
            stuck = int(self._read(STUCK_STEPS)[0]["n"])
            if stuck:
                problems.append(f"{stuck} waiting workflow step(s) wait on no upstream step")
        return problems

    def verify(self) -> None:
        """Refuse a schema litejobs must not use, without writing to it: another program's
        ``jobs`` table, or a store of a newer litejobs. A schema with nothing yet passes."""
        identity = self._identity()
        if identity is None:
            return
        if identity < 0:
            raise StorageError(
                f"{self.path} already has a table named jobs that is not litejobs's; "
                "litejobs refuses to touch it. Use another database or schema")
        if identity > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path} was written by a newer litejobs (PostgreSQL schema {identity}; "
                f"this one knows up to {SCHEMA_VERSION}); upgrade litejobs "
                "(pip install -U litejobs)")

    def _identity(self) -> int | None:
        """The store's schema version (None: nothing there yet; -1: a foreign jobs table),
        read on a connection of its own so that nothing is created."""
        import psycopg
        from psycopg.rows import dict_row

        try:
            with psycopg.connect(self.url, connect_timeout=max(2, int(self.connect_timeout)),
                                 row_factory=dict_row) as conn:
                row = conn.execute(IDENTITY).fetchone()
                assert row is not None
                if not row["meta"]:
                    return -1 if row["jobs"] else None
                got = conn.execute(sql.SELECT_VERSION).fetchone()
                return None if got is None else int(got["value"])
        except psycopg.Error as exc:
            text = str(exc).strip().splitlines()
            raise StorageError(f"cannot read PostgreSQL at {self.path} "
                               f"({text[0] if text else type(exc).__name__})") from None

    def inspect(self, now: float) -> Row:
        """Facts for ``litejobs doctor``, on the server's clock (``now`` is not compared with
        anything): ``journal_mode`` "postgresql" (no SQLite journal), ``schema_version``
        (this store's own), expired leases, running and queued jobs, the oldest queued job's
        run time, the supervisors."""
        facts: Row = dict(self._read(INSPECT)[0])
        for name in ("expired_leases", "running", "queued"):
            facts[name] = int(facts[name])
        facts["journal_mode"] = "postgresql"
        facts["schema_version"] = self._identity() or SCHEMA_VERSION
        facts["supervisors"] = self._read(SELECT_SUPERVISORS)
        return facts

    def health_facts(self, now: float, max_age: float, lease: float) -> Row:
        """What ``litejobs health`` judges (see the SQLite store's), on the server's clock:
        ``application_id`` (litejobs's when the schema is a litejobs store, else 0),
        ``schema_version`` (this store's own), ``supervisors`` with a heartbeat within
        ``max_age``, ``newest_heartbeat``, ``expired_leases`` (ended over ``lease`` ago).
        Nothing is written or created."""
        version = self._identity()
        facts: Row = {"application_id": 0 if version is None or version < 0 else APPLICATION_ID,
                      "schema_version": 0 if version is None or version < 0 else version,
                      "supervisors": 0, "newest_heartbeat": None, "expired_leases": 0}
        if facts["application_id"] != APPLICATION_ID:
            return facts
        row = self._read(HEALTH, (float(max_age), float(lease)))[0]
        facts["supervisors"] = int(row["supervisors"])
        facts["newest_heartbeat"] = row["newest_heartbeat"]
        facts["expired_leases"] = int(row["expired_leases"])
        return facts

    def backup_to(self, dest: str, progress: Callable[[int, int], None] | None = None,
                  pages: int = 1024, pause: float = 0.002) -> Row:
        """Refused in one line: a PostgreSQL database is backed up with the server's tools."""
        raise ValueError(f"litejobs backup copies a SQLite file; back up the PostgreSQL "
                         f"database {self.path} with pg_dump (pg_dump -Fc -f {dest} 'URL')")
