"""The supervisor's maintenance services, River's pattern: each is a ``Service`` with
``run_once(now) -> count`` (one bounded pass, callable from tests with any ``now``) and
``next_deadline()`` (monotonic seconds), so the supervisor's loop only asks each service when
it is next due and runs it then.

One module a service: heartbeat (this supervisor is alive), rescuer (jobs of dead supervisors
and expired leases), pruner (old terminal jobs and cron fires), checkpointer (the WAL),
upkeep (queue rows for queues only jobs name), filewatch (the database file was deleted or
replaced).
"""

from __future__ import annotations

import logging
import time

__all__ = ["Service"]

log = logging.getLogger("litejobs")


class Service:
    """A periodic pass. Subclasses set ``name`` and ``interval`` and write ``run_once``."""

    name = "service"
    interval = 60.0

    def __init__(self, first_in: float = 0.0) -> None:
        self.due = time.monotonic() + first_in

    def next_deadline(self) -> float:
        """When (monotonic) the next pass is due."""
        return self.due

    def run_once(self, now: float) -> int:
        """One bounded pass at wall-clock time ``now``; returns how much it did."""
        raise NotImplementedError

    def after(self, count: int) -> float:
        """Seconds until the next pass, after one that did ``count`` (a full batch may want
        to come back sooner)."""
        return self.interval

    def hold(self, until: float) -> None:
        """No pass before ``until`` (monotonic)."""
        self.due = max(self.due, until)

    def poke(self) -> None:
        """Due now."""
        self.due = time.monotonic()

    def tick(self, now: float, mono: float) -> int:
        """Run a pass if due; returns its count (0 when not due)."""
        if mono < self.due:
            return 0
        count = self.run_once(now)
        self.due = mono + self.after(count)
        return count
