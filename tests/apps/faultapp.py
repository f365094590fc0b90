"""The app of the process fault scenarios (``tests/faults/test_process_faults.py``).

``litejobs run --app tests.apps.faultapp:app`` reads the database path from
``LITEJOBS_TEST_DB``. Every task appends one JSON line when it starts and one when it ends
(``event``, ``id``, ``attempt``, ``pid``, ``start``, ``end``, ``tag``) to the task log: the
``log`` argument, or else ``LITEJOBS_TEST_LOG``. Each line is one ``O_APPEND`` write, so lines
of concurrent workers never interleave and a killed worker leaves whole lines only.

``python -m tests.apps.faultapp produce DB ...`` is a producer process: it enqueues in a loop
and prints each returned job id on its own line (flushed), so a test that kills it knows
exactly which enqueues had returned.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import sys
import time
from typing import Any

import litejobs
from tests.apps import append_record as _append
from tests.apps import lazy_app

#: Worker deaths are retried at once; ``crash_limit`` (a supervisor setting) caps them, and
#: ``retries`` must not cap them first in the chaos scenarios.
RETRIES = 20


def _log_path(log: str | None) -> str:
    path = log or os.environ.get("LITEJOBS_TEST_LOG")
    if not path:
        raise RuntimeError("faultapp tasks need a log path: the `log` argument or "
                           "LITEJOBS_TEST_LOG")
    return path


def _start(log: str | None, tag: Any) -> tuple[str, dict[str, Any], float]:
    job = litejobs.current_job()
    path = _log_path(log)
    start = time.time()
    base = {"id": job.id, "attempt": job.attempt, "pid": os.getpid(), "tag": tag}
    _append(path, {"event": "start", **base, "start": start})
    return path, base, start


def work(seconds: float = 0.0, first: float | None = None, tag: Any = None,
         log: str | None = None) -> int:
    """Log a start, sleep ``seconds`` (``first`` instead on attempt 1), log an end."""
    path, base, start = _start(log, tag)
    pause = first if first is not None and base["attempt"] == 1 else seconds
    if pause:
        time.sleep(pause)
    _append(path, {"event": "end", **base, "start": start, "end": time.time()})
    return os.getpid()


def hard_exit(tag: Any = None, log: str | None = None) -> None:
    _start(log, tag)
    os._exit(3)


def segfault(tag: Any = None, log: str | None = None) -> None:
    _start(log, tag)
    ctypes.string_at(0)


def hog(step_mb: int = 20, pause: float = 0.05, cap_mb: int = 3000, tag: Any = None,
        log: str | None = None) -> int:
    """Grow without bound (well: up to ``cap_mb``) by ``step_mb`` of touched memory a step."""
    path, base, start = _start(log, tag)
    held: list[bytes] = []
    while len(held) * step_mb < cap_mb:
        held.append(b"\x01" * (step_mb << 20))  # written, so resident: RSS grows
        time.sleep(pause)
    _append(path, {"event": "end", **base, "start": start, "end": time.time()})
    return len(held) * step_mb


def make_app(path: str | os.PathLike[str], durability: str = "full") -> litejobs.App:
    """An App on ``path`` with every ``fault.*`` task registered."""
    app = litejobs.App(path, durability=durability)
    app.task(name="fault.work", retries=RETRIES)(work)
    app.task(name="fault.hard_exit", retries=RETRIES)(hard_exit)
    app.task(name="fault.segfault", retries=RETRIES)(segfault)
    app.task(name="fault.hog", retries=RETRIES)(hog)
    return app


__getattr__ = lazy_app(__name__, make_app)


# --- the producer process ----------------------------------------------------------------------


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def produce(argv: list[str]) -> int:
    """Enqueue until ``--stop`` exists (or ``--count`` is reached, or forever); print each
    returned id on its own line, and ``ERR <error>`` for each enqueue that raised."""
    p = argparse.ArgumentParser(prog="faultapp produce")
    p.add_argument("db")
    p.add_argument("--durability", default="full")
    p.add_argument("--stop", help="stop once this file exists")
    p.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    p.add_argument("--pause", type=float, default=0.0, help="seconds between enqueues")
    p.add_argument("--long", type=float, default=0.0,
                   help="share of jobs that run 0.2-0.8 s (the rest run 0-20 ms)")
    p.add_argument("--quick", action="store_true", help="every job runs 0 s")
    p.add_argument("--mix", action="store_true",
                   help="mixed traffic: plain, delayed, batches of 3, idempotency keys")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    app = make_app(args.db, durability=args.durability)
    task = app.tasks["fault.work"]
    errors = n = 0
    while not (args.stop and os.path.exists(args.stop)) and not (args.count and n >= args.count):
        seconds = rng.uniform(0.2, 0.8) if rng.random() < args.long else rng.uniform(0, 0.02)
        if args.quick:
            seconds = 0.0
        kind = n % 4 if args.mix else 0
        try:
            if kind == 0:
                ids = [task.enqueue(seconds, tag="plain").id]
            elif kind == 1:
                ids = [task.options(delay=0.3).enqueue(seconds, tag="delayed").id]
            elif kind == 2:
                ids = [j.id for j in app.enqueue_many(
                    [task.prepare(seconds, tag=f"batch{i}") for i in range(3)])]
            else:
                ids = [task.options(key=f"k{rng.randrange(50)}").enqueue(seconds,
                                                                         tag="keyed").id]
        except Exception as exc:  # surfaced to this producer: the figure the suite reports
            errors += 1
            _emit(f"ERR {type(exc).__name__}: {exc}")
        else:
            for job_id in ids:
                _emit(str(job_id))
        n += 1
        if args.pause:
            time.sleep(args.pause)
    _emit(f"DONE {n} {errors}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["produce"]:
        sys.exit("usage: python -m tests.apps.faultapp produce DB [options]")
    sys.exit(produce(sys.argv[2:]))
