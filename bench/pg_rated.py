"""A rate-limited queue's drain on PostgreSQL: how close to its rate it runs.

    python bench/pg_rated.py [--database URL] [--jobs N] [--rate R] [--repeat K] [--src DIR]

N no-op jobs (default 1000) of a queue limited to ``R/s`` (default 200), drained by one
``litejobs run --workers 2`` on a fresh schema of the PostgreSQL database (default
``$LITEJOBS_TEST_POSTGRES``, the test server of ``.ci/postgres start``). Reported: jobs/s
from the first start to the last (the attempts' ``started_at``, on the server's clock), as a
share of the most the limit allows (a burst of R, then R per 1.1 s window), and the most
starts any 1-second window held (the limit: at most R).
``--src`` runs the supervisor from another checkout (an older commit, for a before/after).

This file is also the app the supervisor runs (``--app pg_rated.py:app``).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import litejobs

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE = 120.0


def noop(i: int = 0) -> None:
    return None


def make_app(path: str) -> litejobs.App:
    app = litejobs.App(path)
    app.task(name="rated.noop", queue="rated", retries=0)(noop)
    return app


app = make_app(os.environ.get("LITEJOBS_BENCH_DB") or "postgresql://localhost/none")


def in_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def drain(server: str, n: int, rate: int, src: str) -> tuple[float, int, float]:
    """(jobs/s first start to last, most starts in 1 s, wall seconds)."""
    import psycopg

    schema = f"bench_rated_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = in_schema(server, schema)
    try:
        workdir = tempfile.mkdtemp(prefix="pg-rated-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
        env["LITEJOBS_BENCH_DB"] = url
        env["PYTHONPATH"] = src
        # enqueued by the same litejobs as the supervisor (its schema version)
        subprocess.run([sys.executable, __file__, "--enqueue", str(n)], cwd=src, env=env,
                       check=True)
        cfg = os.path.join(workdir, "litejobs.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(f'app = "{os.path.join(HERE, "pg_rated.py")}:app"\ndatabase = "{url}"\n'
                    f'[queues.rated]\nrate_limit = "{rate}/s"\n')
        log = open(os.path.join(workdir, "supervisor.log"), "wb")  # noqa: SIM115
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "litejobs", "run", "--config", cfg,
                                 "--workers", "2", "--grace", "5"], cwd=src, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                deadline = time.monotonic() + DEADLINE
                while True:
                    row = conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'"
                                       ).fetchone()
                    if row is not None and row[0] >= n:
                        break
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"bench: drain failed (log: {log.name})")
                    time.sleep(0.01)
                wall = time.perf_counter() - start
                starts = sorted(r[0] for r in conn.execute(
                    "SELECT started_at FROM jobs WHERE state = 'succeeded'"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    most, j = 0, 0
    for i, s in enumerate(starts):
        while starts[j] <= s - 1.0:
            j += 1
        most = max(most, i - j + 1)
    return (len(starts) - 1) / (starts[-1] - starts[0]), most, wall


def main() -> int:
    parser = argparse.ArgumentParser(description="a rate-limited drain on PostgreSQL")
    parser.add_argument("--database", default=os.environ.get("LITEJOBS_TEST_POSTGRES"))
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--src", default=os.path.dirname(HERE),
                        help="the litejobs checkout the supervisor runs from")
    parser.add_argument("--enqueue", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enqueue:
        task = app.tasks["rated.noop"]
        app.enqueue_many([task.prepare(i) for i in range(args.enqueue)])
        return 0
    if not args.database:
        raise SystemExit("bench: give --database postgresql://... (or set "
                         "LITEJOBS_TEST_POSTGRES; .ci/postgres start prints one)")
    runs = [drain(args.database, args.jobs, args.rate, os.path.abspath(args.src))
            for _ in range(args.repeat)]
    # The most the limit allows from the first start to the last: a burst of R, then R per
    # window of 1.1 s (the window is the period plus its margin, RATE_MARGIN).
    best = (args.jobs - 1) / (math.ceil(args.jobs / args.rate - 1) * 1.1)
    for rate, most, wall in runs:
        print(f"{rate:7.1f} jobs/s ({rate / best:.0%} of the {best:.0f}/s {args.rate}/s "
              f"allows), most in 1 s: {most}, wall {wall:.1f} s")
    med = statistics.median(r[0] for r in runs)
    print(f"median {med:.1f} jobs/s ({med / best:.0%}); most in any 1 s over all runs: "
          f"{max(r[1] for r in runs)} (limit {args.rate})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
