"""What ``current_job().set_progress`` costs a task, per call (target: under 20 µs).

    python bench/progress.py [--calls N]

Runs a task through the worker's own ``run_job`` (the code a worker process runs), with its
progress frames written to /dev/null the way a worker writes them to the supervisor's pipe,
and times N calls of ``set_progress`` (and of ``set_metadata`` with one small value) from
inside it. Most calls only store the newest value; one per ``PROGRESS_INTERVAL`` encodes and
writes a frame.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import litejobs
from litejobs import protocol
from litejobs.worker import run_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = litejobs.App(Path(tmp) / "jobs.db")

        @app.task
        def work(n: int) -> None:
            ctx = litejobs.current_job()
            t0 = time.perf_counter()
            for i in range(n):
                ctx.set_progress(i / n, "working")
            t1 = time.perf_counter()
            for i in range(n // 10):
                ctx.set_metadata(rows=i)
            t2 = time.perf_counter()
            timings["set_progress"] = (t1 - t0) / n
            timings["set_metadata"] = (t2 - t1) / (n // 10)

        sink = os.open(os.devnull, os.O_WRONLY)
        frames = 0

        def send(data: bytes) -> None:
            nonlocal frames
            frames += 1
            os.write(sink, data)

        row = {"id": 1, "attempt": 1, "max_attempts": 1, "interrupts": 0,
               "scheduled_at": time.time(), "task": work.name, "queue": "default",
               "args": f"[{calls}]", "kwargs": "{}"}
        msg = protocol.decode_job(protocol.encode_job(row)[4:])
        assert isinstance(msg, protocol.JobMessage)
        outcome = protocol.decode_report(run_job(app, msg, send)[4:])
        assert outcome is not None and outcome["ok"], outcome
        os.close(sink)
    for name, seconds in timings.items():
        print(f"{name:<13} {seconds * 1e6:6.2f} µs a call")
    print(f"frames sent   {frames} (one per {protocol.PROGRESS_INTERVAL} s at most, "
          "and the last before the outcome)")
    target = timings["set_progress"] * 1e6
    print(f"target: under 20 µs: {'ok' if target < 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
