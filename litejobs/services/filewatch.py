"""File watch: the database file this supervisor serves is still the one at its path.

A file deleted (or replaced by a restore) while the supervisor runs would keep being served
through the open connection while producers create and use a new file at the path: jobs
enqueued from then on would never run. When that happens the supervisor logs it and stops
serving (it drains and exits non-zero, for systemd or Docker to restart it on the new file).
"""

from __future__ import annotations

from litejobs.services import Service
from litejobs.store import Store

__all__ = ["FileWatch"]


class FileWatch(Service):
    name = "file watch"
    interval = 2.0

    def __init__(self, store: Store) -> None:
        super().__init__(first_in=self.interval)
        self.store = store
        self.problem: str | None = None  # set once the file is gone or replaced

    def run_once(self, now: float) -> int:
        if self.problem is None:
            self.problem = self.store.file_changed()
        return int(self.problem is not None)
