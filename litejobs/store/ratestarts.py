"""A claim's starts in the queues' rate windows (``rate_starts``), and the starts not yet known
(schema 8): a rated job sent ahead, behind a job its worker runs, starts when that job ends,
which its claim cannot know. Its row waits with the time +infinity (every window counts it)
and its job id until its supervisor learns it began (``record_starts``); a job given back
unstarted drops its row (``ClaimsMixin.unclaim``), one that stops running with its start never
reported counts from then (``_settle_unknown_start``, and the poll's ``sql.RATE_LEFT``). A
flow key's starts (``flowkeys``) follow the same rule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from litejobs.store import sql
from litejobs.store.flowkeys import FLOW_STARTED, FlowKeysMixin
from litejobs.store.rows import QueueLimits, _id_list, _scalar

__all__ = ["FLOW_RATED", "QUEUE_RATED", "RATE_MARGIN", "RateStartsMixin"]

#: Extra seconds (at most 10% of the period) a rate window lasts beyond its period.
RATE_MARGIN = 0.1
#: A claimed row's ``unknown_start``: which windows wait to learn when the job began (it was
#: sent ahead, behind a job its worker runs): its queue's rate, its flow key's rate.
QUEUE_RATED = 1
FLOW_RATED = 2


def _soonest(oldest: float | None, now: float) -> float:
    """The oldest start in a window, for when it leaves: a start not yet known (+infinity)
    is no sooner than now."""
    return now if oldest is None or oldest > now else oldest


class RateStartsMixin(FlowKeysMixin):
    """The rate-window statements of ``ClaimsMixin``."""

    def _rate_starts(self, starts: Mapping[str, tuple[list[int], list[int]]],
                     limits: Mapping[str, QueueLimits], caps: Mapping[str, int],
                     now: float) -> None:
        """Count a claim's starts in their queues' windows, ``(known, not yet known)`` job ids
        by queue (one statement each), and note when a queue they filled has room again."""
        for queue, (known, ahead) in starts.items():
            if known:
                self.cursor.execute(sql.RATE_START_MANY, (queue, now, None, _id_list(known)))
            if ahead:
                self.cursor.execute(sql.RATE_START_MANY, (queue, math.inf, True,
                                                          _id_list(ahead)))
            rate = limits[queue].rate
            if caps[queue] == 0 and rate is not None:
                period = rate[1] + min(RATE_MARGIN, rate[1] * 0.1)
                oldest = _scalar(self.cursor, sql.RATE_OLDEST, (queue, now - period))
                self._slot(queue, _soonest(oldest, now) + period, now)

    def record_starts(self, starts: Sequence[tuple[int, float, int]]) -> None:
        """Jobs sent ahead, claimed with their start not yet known, began: ``(job_id, when,
        unknown_start)`` each (``when``: the moment their supervisor learned it, no sooner
        than they began). Their rows in the rate windows get that time. A job given back
        unstarted in the same transaction (``unclaim``, recorded first) has no row left.
        (``protocols.ClaimTx``; ``Outcomes.record`` calls it.)"""
        cur = self.cursor
        queued = [(job_id, at) for job_id, at, which in starts if which & QUEUE_RATED]
        if len(queued) == 1:
            cur.execute(sql.RATE_STARTED, (queued[0][1], queued[0][0]))
        elif queued:
            cur.execute(sql.RATE_STARTED_MANY,
                        ("[" + ",".join(f"[{int(i)},{float(at)!r}]" for i, at in queued) + "]",))
        for job_id, at, which in starts:
            if which & FLOW_RATED:
                cur.execute(FLOW_STARTED, (at, RATE_MARGIN, job_id))

    def _settle_unknown_start(self, job_id: int, now: float) -> None:
        """The job stopped running (its worker or supervisor died, or drain) with its start
        maybe never reported: counted as begun ``now``, which is no sooner than it did."""
        self.cursor.execute(sql.RATE_STARTED, (now, job_id))
        self.cursor.execute(FLOW_STARTED, (now, RATE_MARGIN, job_id))
