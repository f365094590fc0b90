"""A fan-out of N children with one fan-in, against the same N plain jobs (target: within 1.5×).

    python bench/fanout.py [--jobs N] [--repeat R] [--database DB]

Both run under one idle ``litejobs run --workers 2`` (durability full), on the no-op task of
``benchapp``. Plain: ``enqueue_many`` of N jobs, timed from the call to the last job's finish.
Fan-out: ``app.workflow()`` with N children and one step after all of them, written by one
``flow.enqueue()``, timed from the call to the fan-in step's start (its claim; it receives the
N results). The two alternate R times; medians are printed and written to
``bench/results-fanout.md``. ``--database`` picks the store: a directory for the SQLite file
(default: a temporary one) or a ``postgresql://`` URL (a fresh schema, dropped after); a run
on PostgreSQL prints its table and writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchapp  # noqa: E402
from core import supervisor  # noqa: E402
from storedb import Databases, Reader  # noqa: E402

DEADLINE = 300.0


def wait(predicate: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {DEADLINE:.0f} s")
        time.sleep(0.005)


def plain(db: str, n: int) -> float:
    app, task = benchapp.make_app(db, "full")
    conn = Reader(db)
    base = int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0])
    t0 = time.time()
    jobs = app.enqueue_many([task.prepare(i) for i in range(n)])
    first = jobs[0].id
    wait(lambda: conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'"
                              ).fetchone()[0] >= base + n, f"{n} plain jobs")
    (last,) = conn.execute("SELECT max(finished_at) FROM jobs WHERE id >= ?",
                           (first,)).fetchone()
    conn.close()
    return float(last) - t0


def fanout(db: str, n: int) -> float:
    app, task = benchapp.make_app(db, "full")
    conn = Reader(db)
    t0 = time.time()
    flow = app.workflow("fanout")
    children = [flow.add(task.prepare(i)) for i in range(n)]
    fan_in = flow.add(task.prepare(-1), after=children)
    flow.enqueue()
    wait(lambda: conn.execute("SELECT state FROM jobs WHERE id = ?", (fan_in.id,)
                              ).fetchone()[0] in ("running", "succeeded"), "the fan-in start")
    (started,) = conn.execute("SELECT started_at FROM jobs WHERE id = ?",
                              (fan_in.id,)).fetchone()
    conn.close()
    return float(started) - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", help="a directory for the SQLite file (default: a "
                        "temporary one) or a postgresql:// URL (a fresh schema)")
    parser.add_argument("--out")
    args = parser.parse_args()
    dbs = Databases(args.database)
    pg = dbs.tmp is None
    if args.out is None and not pg:
        args.out = os.path.join(HERE, "results-fanout.md")
    n = args.jobs
    plains: list[float] = []
    fans: list[float] = []
    with tempfile.TemporaryDirectory(prefix="litejobs-fanout-") as tmp:
        db = dbs.fresh("fanout.db")
        benchapp.make_app(db, "full")[0].stats()  # creates the file
        with supervisor(db, os.path.join(tmp, "supervisor.log")):
            for r in range(args.repeat):
                plains.append(plain(db, n))
                fans.append(fanout(db, n))
                print(f"round {r + 1}: plain {plains[-1]:.3f} s, fan-out to fan-in start "
                      f"{fans[-1]:.3f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    dbs.close()
    p, f = statistics.median(plains), statistics.median(fans)
    ratio = f / p
    verdict = "met" if ratio <= 1.5 else "**missed**"
    lines = [
        "# Fan-out and fan-in", "",
        f"Written by `python bench/fanout.py --jobs {n} --repeat {args.repeat}` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPU(s), Python {platform.python_version()}. Medians; one "
        "`litejobs run --workers 2`, durability full, no-op task"
        + (", PostgreSQL." if pg else "."), "",
        "| run | seconds | jobs/s |", "|---|---:|---:|",
        f"| {n:,} plain jobs: enqueue_many to the last finish | {p:.3f} | {n / p:,.0f} |",
        f"| {n:,} children + 1 fan-in: flow.enqueue to the fan-in's start | {f:.3f} | "
        f"{n / f:,.0f} |", "",
        f"Fan-out / plain: {ratio:.2f}× (target ≤ 1.5×: {verdict}).", "",
    ]
    if args.out:
        with open(args.out, "w") as out:
            out.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
