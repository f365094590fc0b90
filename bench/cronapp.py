"""The app bench/cron_precision.py runs: one entry firing every second."""

from __future__ import annotations

import os
import time

import litejobs

app = litejobs.App(os.environ.get("LITEJOBS_BENCH_DB", "cron-bench.db"), durability="fast")


@app.cron("* * * * * *", name="every_second", overlap="allow")
def every_second() -> float:
    """Returns how late it started after its instant, in seconds."""
    return time.time() - litejobs.current_job().scheduled_at.timestamp()
