"""The PostgreSQL store's upkeep in a supervisor's transaction: pruning old jobs, the
supervisors' heartbeat rows (part of ``UpkeepTx``; the /metrics figures are not here yet).

``before`` arguments are the caller's clock with no ``now`` beside them: they are taken as a
distance back from this process's ``time.time()``, and compared on the server's clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from litejobs.store.postgres import sql
from litejobs.store.rows import Row
from litejobs.store.tx import pid_namespace

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgUpkeepMixin"]


def _ago(before: float) -> float:
    return float(time.time() - before)


class PgUpkeepMixin:
    """``PgTx``'s pruning and heartbeat statements."""

    conn: psycopg.Connection[Any]

    def prune(self, before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` jobs that ended before ``before`` (a workflow step while a
        step waiting on it has not ended is kept, as in the SQLite store)."""
        return self.conn.execute(sql.PRUNE, (_ago(before), limit)).rowcount

    def heartbeat(self, supervisor: str, hostname: str, pid: int, started: float, now: float,
                  queues: str) -> None:
        """Record that ``supervisor`` (this process: its PID namespace is read here) lives;
        its heartbeat and start on the server's clock."""
        self.conn.execute(sql.UPSERT_SUPERVISOR, (
            supervisor, hostname, pid, float(now - started), queues, pid_namespace()))

    def forget_supervisor(self, supervisor: str) -> None:
        self.conn.execute(sql.DELETE_SUPERVISOR, (supervisor,))

    def forget_supervisors_before(self, before: float) -> None:
        self.conn.execute(sql.DELETE_OLD_SUPERVISORS, (_ago(before),))

    def set_workers(self, supervisor: str, workers: Sequence[Row]) -> None:
        """Write ``supervisor``'s workers (see ``litejobs.services.heartbeat``) on its row."""
        self.conn.execute(sql.SET_WORKERS, (json.dumps(list(workers)), supervisor))
