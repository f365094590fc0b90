"""The PostgreSQL store's /metrics figures in a write transaction (the rest of ``UpkeepTx``):
per-minute figures for the charts and the never-decreasing totals, as the SQLite store's
(``litejobs.store.metrics``).

A figure's minute is the caller's (``now // 60``, as ``litejobs.figures`` counts it): a label,
not a time compared with anything. The jobs and fires "this transaction" ended or wrote are
the rows whose ``xmin`` is this transaction's id, where the SQLite store matches its ``now``
to the bit (here each statement has its own server time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["FIGURE_READS", "PgFiguresMixin"]

# (minutes, names, labels, kinds, values), each key once.
ADD_MINUTES = """
INSERT INTO metric_minutes (minute, name, label, kind, value)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[])
ON CONFLICT (minute, name, label, kind) DO UPDATE
SET value = metric_minutes.value + excluded.value
"""
ADD_TOTALS = """
INSERT INTO metric_totals (name, label, kind, value)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[])
ON CONFLICT (name, label, kind) DO UPDATE SET value = metric_totals.value + excluded.value
"""
# Rows written by this transaction (xmin: the 32 low bits of its id).
_MINE = "xmin::text::bigint = mod(pg_current_xact_id()::text::bigint, 4294967296)"
EXPIRED_NOW = f"""
SELECT task, count(*) AS n FROM jobs
WHERE state = 'cancelled' AND starts_with(error, 'expired:') AND {_MINE} GROUP BY task
"""
CANCELLED_NOW = f"""
SELECT task, count(*) AS n FROM jobs
WHERE id = ANY(%s) AND state = 'cancelled' AND {_MINE} GROUP BY task
"""
CRON_FIRED_NOW = f"""
SELECT outcome, count(*) AS n FROM cron_fires
WHERE entry = %s AND instant BETWEEN %s AND %s AND {_MINE} GROUP BY outcome
"""
PRUNE_METRIC_MINUTES = """
DELETE FROM metric_minutes WHERE (minute, name, label, kind) IN (
    SELECT minute, name, label, kind FROM metric_minutes WHERE minute < %s LIMIT %s)
"""
#: The figures' reads (PostgresStore): (since's minute) and ().
FIGURE_READS = {
    "outcome_minutes": """
SELECT minute, kind, sum(value) AS value FROM metric_minutes
WHERE minute >= %s AND name = 'outcome' GROUP BY minute, kind ORDER BY minute, kind
""",
    "metric_totals": (
        "SELECT name, label, kind, value FROM metric_totals ORDER BY name, label, kind"),
}


class PgFiguresMixin:
    """``PgTx``'s figures statements."""

    conn: psycopg.Connection[Any]

    def add_figures(self, rows: Sequence[tuple[int, str, str, str, float]]) -> None:
        """Add ``rows`` (minute, name, label, kind, value) to their minutes and the totals."""
        if not rows:
            return
        minutes: dict[tuple[int, str, str, str], float] = {}
        totals: dict[tuple[str, str, str], float] = {}
        for minute, name, label, kind, value in rows:
            minutes[(int(minute), name, label, kind)] = minutes.get(
                (int(minute), name, label, kind), 0.0) + float(value)
            totals[(name, label, kind)] = totals.get((name, label, kind), 0.0) + float(value)
        # each key once: one INSERT ... ON CONFLICT may not touch a row twice
        self.conn.execute(ADD_MINUTES, [list(c) for c in zip(
            *[(*k, v) for k, v in minutes.items()], strict=True)])
        self.conn.execute(ADD_TOTALS, [list(c) for c in zip(
            *[(*k, v) for k, v in totals.items()], strict=True)])

    def figure_expired(self, now: float) -> None:
        """Count the jobs this transaction's ``expire_due`` cancelled, per task."""
        self._outcome_counts("expired", now, self.conn.execute(EXPIRED_NOW).fetchall())

    def figure_cancelled(self, ids: Sequence[int], now: float) -> None:
        """Count the jobs of ``ids`` this transaction cancelled, per task."""
        rows = self.conn.execute(CANCELLED_NOW, ([int(i) for i in ids],)).fetchall()
        self._outcome_counts("cancelled", now, rows)

    def figure_cron(self, entry: str, first: float, last: float, now: float) -> None:
        """Count the fires of ``entry`` (instants ``first`` to ``last``) this tick wrote."""
        minute = int(now // 60)
        rows = self.conn.execute(CRON_FIRED_NOW, (entry, first, last)).fetchall()
        self.add_figures([(minute, "cron", entry, str(r["outcome"]), float(r["n"]))
                          for r in rows])

    def prune_metric_minutes(self, before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` per-minute figures older than ``before`` (the totals stay)."""
        return self.conn.execute(PRUNE_METRIC_MINUTES, (int(before // 60), limit)).rowcount

    def _outcome_counts(self, kind: str, now: float, rows: Sequence[Any]) -> None:
        minute = int(now // 60)
        self.add_figures([(minute, "outcome", str(r["task"]), kind, float(r["n"]))
                          for r in rows])
