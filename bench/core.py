"""Core benchmarks of litejobs alone: enqueue, bulk enqueue, drain, pickup latency.

    python bench/core.py [--jobs N] [--quick] [--dir DIR] [--out FILE]

Measures, each on its own fresh database file:

- enqueue/s, one job per call (one transaction each), durability "full" and "fast";
- bulk enqueue/s with ``app.enqueue_many`` in chunks of 1000;
- drain/s: N queued no-op jobs run by ``litejobs run --workers 2``, timed from starting the
  supervisor until all have succeeded (start-up included), and from the first job's start to
  the last one's finish (``started_at``/``finished_at`` in the database);
- pickup latency of an idle supervisor: 200 jobs enqueued 10 ms apart, ``started_at -
  created_at`` (the claim, not the worker's first line of code), p50 and p99.

Prints a table and writes it, with the machine's details, to bench/results-core.md (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchapp  # noqa: E402

import litejobs  # noqa: E402

CHUNK = 1000
DEADLINE = 300.0  # seconds any one phase may take before the benchmark gives up


@dataclass
class Row:
    name: str
    value: float
    unit: str
    detail: str


def fresh(workdir: str, name: str) -> str:
    path = os.path.join(workdir, name)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    return path


# --- enqueue ----------------------------------------------------------------------------------


def enqueue_one(workdir: str, n: int, durability: str) -> Row:
    app, task = benchapp.make_app(fresh(workdir, f"enqueue-{durability}.db"), durability)
    task.enqueue(0)  # create the file and schema outside the timing
    start = time.perf_counter()
    for i in range(n):
        task.enqueue(i)
    took = time.perf_counter() - start
    app.store.close()
    return Row(f"enqueue, one by one ({durability})", n / took, "jobs/s",
               f"{n} jobs in {took:.2f} s, one transaction each")


def enqueue_bulk(workdir: str, n: int) -> Row:
    app, task = benchapp.make_app(fresh(workdir, "enqueue-bulk.db"), "full")
    task.enqueue(0)
    start = time.perf_counter()
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        app.enqueue_many([task.prepare(i) for i in range(done, done + size)])
        done += size
    took = time.perf_counter() - start
    app.store.close()
    return Row("enqueue_many, chunks of 1000 (full)", n / took, "jobs/s",
               f"{n} jobs in {took:.2f} s")


# --- the supervisor ---------------------------------------------------------------------------


@contextlib.contextmanager
def supervisor(db: str, log_path: str, workers: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    """``litejobs run --app benchapp:app`` on ``db``; SIGTERM on exit, which must give 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env["LITEJOBS_BENCH_DB"] = db
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", "benchapp:app",
           "--workers", str(workers), "--grace", "5"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    if code != 0:
        raise SystemExit(f"bench: the supervisor exited {code} after SIGTERM (log: {log_path})")


def count_succeeded(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0])


def wait_succeeded(conn: sqlite3.Connection, n: int, proc: subprocess.Popen[bytes],
                   poll: float) -> None:
    deadline = time.monotonic() + DEADLINE
    while count_succeeded(conn) < n:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the supervisor exited {proc.returncode} early")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {n} jobs did not succeed within {DEADLINE:.0f} s")
        time.sleep(poll)


def reader(db: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)


def drain(workdir: str, n: int, log_path: str) -> list[Row]:
    db = fresh(workdir, "drain.db")
    app, task = benchapp.make_app(db, "full")
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        app.enqueue_many([task.prepare(i) for i in range(done, done + size)])
        done += size
    conn = reader(db)
    start = time.perf_counter()
    with supervisor(db, log_path) as proc:
        wait_succeeded(conn, n, proc, poll=0.01)
        wall = time.perf_counter() - start
    first, last = conn.execute(
        "SELECT min(started_at), max(finished_at) FROM jobs WHERE state = 'succeeded'"
    ).fetchone()
    conn.close()
    busy = last - first
    return [
        Row("drain, 2 workers, from `litejobs run` start", n / wall, "jobs/s",
            f"{n} jobs in {wall:.2f} s, start-up included"),
        Row("drain, 2 workers, first start to last finish", n / busy, "jobs/s",
            f"{n} jobs in {busy:.2f} s (started_at/finished_at)"),
    ]


def latency(workdir: str, count: int, gap: float, log_path: str) -> list[Row]:
    db = fresh(workdir, "latency.db")
    _, task = benchapp.make_app(db, "full")
    task.enqueue(-1)  # warm-up: creates the file; its pickup shows the supervisor is ready
    conn = reader(db)
    with supervisor(db, log_path) as proc:
        wait_succeeded(conn, 1, proc, poll=0.01)
        for i in range(count):
            task.enqueue(i)
            time.sleep(gap)
        wait_succeeded(conn, count + 1, proc, poll=0.01)
    samples = [float(v) * 1000.0 for (v,) in conn.execute(
        "SELECT started_at - created_at FROM jobs WHERE args != '[-1]' ORDER BY id")]
    conn.close()
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    detail = f"{count} jobs {gap * 1000:.0f} ms apart, idle supervisor; claim time"
    return [
        Row("pickup latency p50", statistics.median(samples), "ms", detail),
        Row("pickup latency p99", cuts[98], "ms", f"max {max(samples):.1f} ms"),
    ]


# --- report -----------------------------------------------------------------------------------


def filesystem(path: str) -> str:
    """The file system type holding ``path`` (fsync cost depends on it), from /proc/mounts."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and path.startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def machine(workdir: str) -> list[str]:
    import apsw

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- litejobs {litejobs.__version__}, Python {platform.python_version()}, "
        f"SQLite {apsw.sqlite_lib_version()} (apsw {apsw.apsw_version()})",
        f"- {platform.system()} {platform.release()}, {os.cpu_count()} CPU(s): {cpu}",
        f"- database directory: {workdir} ({filesystem(os.path.realpath(workdir))})",
        "- load average at the end (1/5/15 min): "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]


def table(rows: list[Row]) -> list[str]:
    lines = ["| measurement | result | detail |", "|---|---:|---|"]
    for r in rows:
        value = f"{r.value:,.0f}" if r.unit == "jobs/s" else f"{r.value:.1f}"
        lines.append(f"| {r.name} | {value} {r.unit} | {r.detail} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description="litejobs core benchmarks")
    parser.add_argument("--jobs", type=int, default=10_000, help="N (default 10000)")
    parser.add_argument("--quick", action="store_true",
                        help="small N for CI (1000 jobs, about 10 s)")
    parser.add_argument("--dir", help="where the database files go (default: a temp dir); "
                        "fsync cost depends on its file system")
    parser.add_argument("--out", default=os.path.join(HERE, "results-core.md"),
                        help="the Markdown report (default bench/results-core.md)")
    opts = parser.parse_args()
    n = 1000 if opts.quick else opts.jobs
    if n < 1:
        parser.error("--jobs must be at least 1")
    workdir = tempfile.mkdtemp(prefix="litejobs-bench-", dir=opts.dir)
    log_path = os.path.join(workdir, "supervisor.log")
    rows: list[Row] = []

    def phase(result: Row | list[Row]) -> None:
        for r in result if isinstance(result, list) else [result]:
            rows.append(r)
            print(f"  {r.name:<48} {r.value:>10.1f} {r.unit:<7} {r.detail}", flush=True)

    print(f"litejobs core bench: N={n}, databases in {workdir}", flush=True)
    try:
        phase(enqueue_one(workdir, n, "full"))
        phase(enqueue_one(workdir, n, "fast"))
        phase(enqueue_bulk(workdir, n))
        phase(drain(workdir, n, log_path))
        phase(latency(workdir, 200, 0.010, log_path))
    except BaseException:
        print(f"bench failed; files kept in {workdir}", file=sys.stderr)
        raise
    report = [
        "# litejobs core benchmark",
        "",
        f"`python bench/core.py {'--quick' if opts.quick else f'--jobs {n}'}` — N = {n}.",
        "",
        *machine(opts.dir or tempfile.gettempdir()),
        "",
        *table(rows),
        "",
        "Enqueue: one transaction per call (`full` fsyncs each commit, `fast` is "
        "`synchronous=NORMAL`). Drain: `litejobs run --workers 2` (its own commits are never "
        "fsynced), a no-op task; the first rate includes interpreter and worker start-up. "
        "Latency: "
        "`started_at - created_at`, i.e. from the enqueuer's clock reading before its commit to "
        "the supervisor's claim.",
        "",
    ]
    print()
    print("\n".join(table(rows)))
    with open(opts.out, "w", encoding="utf-8") as f:
        f.write("\n".join(report))
    print(f"\nwrote {opts.out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
