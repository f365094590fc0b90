"""Async task throughput: jobs/s of ``async def`` tasks against sync ones, 2 workers.

    python bench/async.py [--jobs N] [--workers W] [--async-concurrency C]

Starts a real `litejobs run` and, for each kind, enqueues N jobs (default 2,000) at once and
measures from the first attempt's start to the last one's finish (the attempts' own times, so
the supervisor's start-up is not counted). Kinds: a 10 ms ``await asyncio.sleep`` (up to
``async_concurrency`` at once per worker: at most W x C / 10 ms, 3,200 jobs/s for 2 x 16)
against a 10 ms ``time.sleep`` (one at a time per worker: at most W / 10 ms = 200 jobs/s), and
an empty ``async def`` against an empty ``def`` (the event loop's cost a job).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import litejobs

APP = '''
import asyncio, os, time
import litejobs

app = litejobs.App(os.environ["LITEJOBS_DB"])

@app.task(name="asleep")
async def asleep() -> None:
    await asyncio.sleep(0.01)

@app.task(name="ssleep")
def ssleep() -> None:
    time.sleep(0.01)

@app.task(name="anoop")
async def anoop() -> None:
    pass

@app.task(name="snoop")
def snoop() -> None:
    pass
'''


def measure(app: litejobs.App, task: str, n: int) -> float:
    jobs = app.enqueue_many([app.tasks[task].prepare() for _ in range(n)])
    deadline = time.monotonic() + 120
    for job in jobs:
        job.result(timeout=max(0.1, deadline - time.monotonic()))
    attempts = [a for job in jobs for a in job.attempts()]
    first = min(a.started_at for a in attempts if a.started_at is not None)
    last = max(a.finished_at for a in attempts if a.finished_at is not None)
    return n / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--async-concurrency", type=int, default=16)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        (Path(tmp) / "asyncbench.py").write_text(APP)
        config = Path(tmp) / "litejobs.toml"
        config.write_text(f"async_concurrency = {opts.async_concurrency}\n")
        env = {**os.environ, "LITEJOBS_DB": str(db), "PYTHONPATH": tmp}
        sys.path.insert(0, tmp)
        os.environ["LITEJOBS_DB"] = str(db)
        import asyncbench  # the same module the workers import: its App and tasks

        app: litejobs.App = asyncbench.app
        proc = subprocess.Popen([sys.executable, "-m", "litejobs", "run", "--app",
                                 "asyncbench:app", "--workers", str(opts.workers),
                                 "--config", str(config)], cwd=tmp,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            measure(app, "snoop", 50)  # warm up: workers started, pages cached
            rates = {task: measure(app, task, opts.jobs)
                     for task in ("asleep", "ssleep", "anoop", "snoop")}
        finally:
            proc.terminate()
            proc.wait(60)
    print(f"{opts.jobs} jobs a kind, {opts.workers} workers, async_concurrency = "
          f"{opts.async_concurrency}")
    print(f"10 ms asyncio.sleep (async def) {rates['asleep']:8.0f} jobs/s")
    print(f"10 ms time.sleep    (def)       {rates['ssleep']:8.0f} jobs/s")
    print(f"empty async def                 {rates['anoop']:8.0f} jobs/s")
    print(f"empty def                       {rates['snoop']:8.0f} jobs/s")


if __name__ == "__main__":
    main()
