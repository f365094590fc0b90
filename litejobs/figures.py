"""The figures a supervisor counts for ``/metrics`` and the dashboard, added up in memory.

Per task: each ended attempt's outcome and its duration; per queue: each start's pickup delay
(seconds from the job's due time, its ``run_at``, to its claim). The claimer counts them after
each transaction and writes what it has (``rows``) at most once a second, in the transaction
of its fallback poll, which runs every second anyway, and at shutdown (``Claimer.flush``): the
drain's hot transaction never pays for them. A supervisor killed with SIGKILL loses the last
second's figures, no more. Cron fires, cancels and expiries are counted where they happen, in
their own transactions (``litejobs.store.metrics``).

Each ended attempt counts once, as the first of: ``succeeded``; ``timeout`` (it ran past
its timeout); ``crashed`` (its worker died); ``retried`` (another attempt comes); ``failed``
(for good). Attempts put back without counting (drain, a worker stopped for another job's
sake) are not counted. Durations and delays are histograms: a count per bucket (its upper
bound as text, ``BUCKETS``; not cumulative), ``sum`` (seconds) and ``count``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from litejobs.store.metrics import FigureRow

if TYPE_CHECKING:
    from litejobs.outcomes import Outcome

__all__ = ["BOUNDS", "BUCKETS", "OUTCOMES", "Figures"]

#: Upper bounds (seconds) of the duration and pickup-delay buckets.
BOUNDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                             30.0, 60.0, 300.0, 900.0, 3600.0, math.inf)
#: The buckets' bounds as stored (the ``kind`` of their rows).
BUCKETS: tuple[str, ...] = tuple("+Inf" if b == math.inf else format(b, "g") for b in BOUNDS)
OUTCOMES = ("succeeded", "failed", "retried", "timeout", "crashed", "cancelled", "expired")
_SUCCEEDED, _FAILED, _RETRIED, _TIMEOUT, _CRASHED = range(5)
_SUM = len(BOUNDS)  # a histogram's list: one count per bucket, then the sum


class Figures:
    """Counts not written yet, by (minute, task or queue)."""

    __slots__ = ("durations", "outcomes", "pickups")

    def __init__(self) -> None:
        self.outcomes: dict[tuple[int, str], list[int]] = {}
        self.durations: dict[tuple[int, str], list[float]] = {}
        self.pickups: dict[tuple[int, str], list[float]] = {}

    def __bool__(self) -> bool:
        return bool(self.outcomes or self.pickups)

    def ended(self, outcomes: Iterable[Outcome], now: float) -> None:
        """Count the attempts a transaction at ``now`` recorded."""
        minute = int(now // 60)
        counts = self.outcomes
        durations = self.durations
        task = None
        c: list[int] = []
        h: list[float] = []
        for o in outcomes:
            kind = o.kind
            if o.verdict == "refused":  # outcomes.REFUSED: the store did not end the attempt
                continue
            if kind in {"ok", "then"}:
                i = _SUCCEEDED
            elif kind == "fail":
                if o.error.startswith("JobTimeout:"):
                    i = _TIMEOUT
                elif o.crashed:
                    i = _CRASHED
                else:
                    i = _FAILED if o.retry_at is None else _RETRIED
            else:
                continue  # put back, not ended
            a = o.a
            if a.task != task:  # a batch is mostly one task's: one lookup for a run of them
                task = a.task
                key = (minute, task)
                c = counts.get(key) or counts.setdefault(key, [0] * 5)
                h = durations.get(key) or durations.setdefault(key, [0.0] * (_SUM + 1))
            c[i] += 1
            d = max(o.finished - a.started, 0.0)  # (the wall clock may step back)
            h[bisect_left(BOUNDS, d)] += 1
            h[_SUM] += d

    def claimed(self, rows: Iterable[Mapping[str, Any]], now: float) -> None:
        """Count the pickup delays of jobs claimed at ``now``."""
        minute = int(now // 60)
        pickups = self.pickups
        queue = None
        h: list[float] = []
        for row in rows:
            if row["queue"] != queue:
                queue = row["queue"]
                key = (minute, queue)
                h = pickups.get(key) or pickups.setdefault(key, [0.0] * (_SUM + 1))
            d = max(now - row["run_at"], 0.0)
            h[bisect_left(BOUNDS, d)] += 1
            h[_SUM] += d

    def rows(self) -> list[FigureRow]:
        """Everything counted, as rows to add (``Tx.add_figures``); ``clear`` once written."""
        out: list[FigureRow] = []
        for (minute, task), c in self.outcomes.items():
            out.extend((minute, "outcome", task, OUTCOMES[i], float(n))
                       for i, n in enumerate(c) if n)
        for name, table in (("duration", self.durations), ("pickup", self.pickups)):
            for (minute, label), h in table.items():
                out.extend((minute, name, label, BUCKETS[i], float(n))
                           for i, n in enumerate(h[:_SUM]) if n)
                out.append((minute, name, label, "sum", h[_SUM]))
                out.append((minute, name, label, "count", float(sum(h[:_SUM]))))
        return out

    def clear(self) -> None:
        self.outcomes.clear()
        self.durations.clear()
        self.pickups.clear()
