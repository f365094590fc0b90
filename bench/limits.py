"""What flow control costs: drain rate with queue and key limits enabled versus without.

    python bench/limits.py [--jobs N] [--repeat R] [--quick] [--dir DIR] [--database URL]
                           [--out FILE]

Each setup gets a fresh database with N queued no-op jobs, then ``litejobs run --workers 2``
drains it. The rate is N over the time from the first job's start to the last one's finish
(``started_at``/``finished_at`` in the database, so interpreter start-up is left out); the wall
time from starting the supervisor is shown too. Each setup runs R times (default 3), the setups
interleaved round by round so a burst of load on the machine hits them alike; the median
counts. Setups:

- no limits: a queue without a ``[queues.X]`` table, jobs without a concurrency key;
- all limits: ``[queues.limited] concurrency = 64`` (the check runs on every claim but does
  not bind: 2 workers hold at most 2 × 32 jobs, the running one and a prefetched backlog, and
  prefetched jobs count as running), 50 distinct concurrency keys with
  ``concurrency_limit = 2``, and ``rate_limit = "10000/s"`` (generous: it does not bind either);
- each of the three alone, to see which one costs what;
- a binding cap for comparison: ``concurrency = 2``, one job per worker, so no worker gets a
  backlog and each job waits for a round trip through the supervisor. That is the limit doing
  its job, not overhead, and is not part of the issue's ratio.

The issue's bar: the limits must not cost more than half the throughput (ratio >= 0.5).
Prints a table and appends it, with the machine's details, to bench/results-limits.md.
``--database postgresql://...`` runs every setup on that server instead, each drain on a fresh
schema (dropped after); the SQLite files (the default) go in ``--dir``.

This file is also the app the supervisor runs (``--app limits.py:app``): importing it builds
the App on ``$LITEJOBS_BENCH_DB``; only running it as a script benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import litejobs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from storedb import Databases, Reader

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = 50
CHUNK = 1000
DEADLINE = 300.0

#: (name, queue, concurrency key?) per setup; the queue tables are in ``CONFIG``.
SETUPS = [
    ("no limits", "plain", False),
    ("all limits: queue cap + 50 keys (limit 2) + rate", "limited", True),
    ("queue concurrency cap only", "capped", False),
    ("50 concurrency keys (limit 2) only", "plain", True),
    ('rate limit "10000/s" only', "rated", False),
    ("binding cap: concurrency = 2 (= workers)", "tight", False),
]
CONFIG = """
[queues.limited]
concurrency = 64
rate_limit = "10000/s"

[queues.capped]
concurrency = 64

[queues.tight]
concurrency = 2

[queues.rated]
rate_limit = "10000/s"
"""


def noop(i: int = 0) -> None:
    """Does nothing: what is measured is litejobs, not the task."""
    return None


def key_of(i: int = 0) -> str:
    return f"k{i % KEYS}"


def make_app(path: str) -> litejobs.App:
    app = litejobs.App(path)
    app.task(name="limits.noop", retries=0)(noop)
    app.task(name="limits.keyed", retries=0, concurrency_key=key_of, concurrency_limit=2)(noop)
    return app


app = make_app(os.environ.get("LITEJOBS_BENCH_DB") or os.path.join(HERE, "limits.db"))


@dataclass
class Result:
    name: str
    n: int
    busy: float  # first start to last finish
    wall: float  # from starting the supervisor

    @property
    def rate(self) -> float:
        return self.n / self.busy


def median(runs: list[Result]) -> Result:
    """The run of median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


def fresh(path: str) -> str:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    return path


def drain(workdir: str, index: int, name: str, queue: str, keyed: bool, n: int,
          dbs: Databases | None = None) -> Result:
    db = (fresh(os.path.join(workdir, f"limits-{index}.db")) if dbs is None
          else dbs.fresh(f"limits-{index}.db"))
    producer = make_app(db)
    task = producer.tasks["limits.keyed" if keyed else "limits.noop"]
    bound = task.options(queue=queue)
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        producer.enqueue_many([bound.prepare(i) for i in range(done, done + size)])
        done += size
    producer.store.close()

    cfg = os.path.join(workdir, "litejobs.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(f'app = "{os.path.join(HERE, "limits.py")}:app"\n'
                f'database = "{db}"\nretention = "7d"\n{CONFIG}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env["LITEJOBS_BENCH_DB"] = db
    log_path = os.path.join(workdir, "supervisor.log")
    conn = Reader(db)
    start = time.perf_counter()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "litejobs", "run", "--config", cfg, "--workers", "2",
             "--grace", "5"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE
        while conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'"
                           ).fetchone()[0] < n:
            if proc.poll() is not None:
                raise SystemExit(f"bench: the supervisor exited {proc.returncode} early "
                                 f"(log: {log_path})")
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {name}: {n} jobs did not succeed within "
                                 f"{DEADLINE:.0f} s (log: {log_path})")
            time.sleep(0.01)
        wall = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    first, last = conn.execute(
        "SELECT min(started_at), max(finished_at) FROM jobs WHERE state = 'succeeded'"
    ).fetchone()
    conn.close()
    return Result(name, n, last - first, wall)


def machine() -> str:
    import apsw

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"litejobs {litejobs.__version__}, Python {platform.python_version()}, SQLite "
            f"{apsw.sqlite_lib_version()}; {platform.system()} {platform.release()}, "
            f"{os.cpu_count()} CPU(s): {cpu}")


def main() -> int:
    parser = argparse.ArgumentParser(description="litejobs: the cost of flow-control limits")
    parser.add_argument("--jobs", type=int, default=3000, help="N per setup (default 3000)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per setup, interleaved; the median counts (default 3)")
    parser.add_argument("--quick", action="store_true", help="N = 500, for CI")
    parser.add_argument("--dir", help="where the database files go (default: a temp dir)")
    parser.add_argument("--database", help="a postgresql:// URL: each drain on a fresh schema "
                        "of that server (default: SQLite files in --dir)")
    parser.add_argument("--out", default=os.path.join(HERE, "results-limits.md"),
                        help="the Markdown file the results are appended to")
    opts = parser.parse_args()
    dbs = Databases(opts.database) if opts.database else None
    n = 500 if opts.quick else opts.jobs
    if n < 1 or opts.repeat < 1:
        parser.error("--jobs and --repeat must be at least 1")
    workdir = tempfile.mkdtemp(prefix="litejobs-limits-", dir=opts.dir)
    print(f"litejobs limits bench: N={n} per setup, {opts.repeat} run(s) each, 2 workers, "
          f"databases in {workdir}", flush=True)
    runs: list[list[Result]] = [[] for _ in SETUPS]
    try:
        for round_ in range(opts.repeat):
            for index, (name, queue, keyed) in enumerate(SETUPS):
                r = drain(workdir, index, name, queue, keyed, n, dbs)
                runs[index].append(r)
                print(f"  [{round_ + 1}] {name:<50} {r.rate:>8,.0f} jobs/s  ({r.busy:.2f} s; "
                      f"wall {r.wall:.2f} s)", flush=True)
    except BaseException:
        print(f"bench failed; files kept in {workdir}", file=sys.stderr)
        raise
    finally:
        if dbs is not None:
            dbs.close()
    results = [median(r) for r in runs]
    spread = [f"{min(x.rate for x in r):,.0f}–{max(x.rate for x in r):,.0f}" for r in runs]
    base = results[0].rate
    ratio = results[1].rate / base
    verdict = "meets" if ratio >= 0.5 else "FAILS"
    lines = [
        "",
        f"## {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} — "
        f"`python bench/limits.py{' --quick' if opts.quick else f' --jobs {n}'}`"
        + (", PostgreSQL" if dbs is not None else ""),
        "",
        f"{machine()}. N = {n} no-op jobs per setup, `litejobs run --workers 2`; rate = N / "
        f"(last finish − first start), the median of {opts.repeat} interleaved run(s). Load "
        "average at the end: "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + ".",
        "",
        "| setup | jobs/s (median) | vs no limits | runs' range | first start → last "
        "finish | wall, start-up incl. |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r, low_high in zip(results, spread, strict=True):
        lines.append(f"| {r.name} | {r.rate:,.0f} | {r.rate / base:.2f} | {low_high} | "
                     f"{r.busy:.2f} s | {r.wall:.2f} s |")
    lines += ["", f"All limits keep {ratio:.0%} of the unlimited drain rate: this {verdict} the "
              "bar of at least 50%.", ""]
    new_file = not os.path.exists(opts.out)
    with open(opts.out, "a", encoding="utf-8") as f:
        if new_file:
            f.write("# litejobs: the cost of flow-control limits\n\nEach run of "
                    "`bench/limits.py` appends a section. Limits are enforced inside the claim "
                    "transaction; the bar (issue 4) is that they cost no more than half the "
                    "throughput.\n")
        f.write("\n".join(lines))
    print(f"\nno limits {base:,.0f} jobs/s, all limits {results[1].rate:,.0f} jobs/s: ratio "
          f"{ratio:.2f} ({verdict} >= 0.5)")
    print(f"appended to {opts.out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
