"""A full concurrency key's backlog on PostgreSQL: what it costs the other jobs.

    python bench/pg_parking.py [--database URL] [--backlog K] [--jobs N] [--src DIR]

One key of limit 1 whose job runs for the whole drain, K more queued jobs of that key
(default 20,000) and N plain no-op jobs (default 1,000), drained by ``litejobs run
--workers 2`` on a fresh schema (default ``$LITEJOBS_TEST_POSTGRES``). Reported: the plain
jobs' rate (first start to last finish, on the server's clock). ``--src`` runs the supervisor
from another checkout (an older commit, for a before/after).

This file is also the app the supervisor runs (``--app pg_parking.py:app``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import litejobs

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE = 300.0


def noop(i: int = 0) -> None:
    return None


def hold(seconds: float = 0.0) -> None:
    time.sleep(seconds)


def make_app(path: str) -> litejobs.App:
    app = litejobs.App(path)
    app.task(name="park.noop", retries=0)(noop)
    app.task(name="park.hold", retries=0, concurrency_key=lambda seconds=0.0: "k",
             concurrency_limit=1)(hold)
    return app


app = make_app(os.environ.get("LITEJOBS_BENCH_DB") or "postgresql://localhost/none")


def enqueue(backlog: int, n: int) -> None:
    hold_task, plain = app.tasks["park.hold"], app.tasks["park.noop"]
    hold_task.enqueue(DEADLINE)  # runs for the whole drain: the key stays full
    for done in range(0, backlog, 5000):
        app.enqueue_many([hold_task.prepare(0.0) for _ in range(min(5000, backlog - done))])
    app.enqueue_many([plain.prepare(i) for i in range(n)])


def drain(server: str, backlog: int, n: int, src: str) -> float:
    import psycopg

    schema = f"bench_park_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    try:
        workdir = tempfile.mkdtemp(prefix="pg-park-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
        env["LITEJOBS_BENCH_DB"] = url
        env["PYTHONPATH"] = src
        subprocess.run([sys.executable, __file__, "--enqueue", f"{backlog},{n}"], cwd=src,
                       env=env, check=True)
        cfg = os.path.join(workdir, "litejobs.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(f'app = "{os.path.join(HERE, "pg_parking.py")}:app"\ndatabase = "{url}"\n')
        log = open(os.path.join(workdir, "supervisor.log"), "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "litejobs", "run", "--config", cfg,
                                 "--workers", "2", "--grace", "1"], cwd=src, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        done = "SELECT count(*) FROM jobs WHERE task = 'park.noop' AND state = 'succeeded'"
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                deadline = time.monotonic() + DEADLINE
                while (conn.execute(done).fetchone() or (0,))[0] < n:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"bench: drain failed (log: {log.name})")
                    time.sleep(0.02)
                first, last = conn.execute(
                    "SELECT min(started_at), max(finished_at) FROM jobs "
                    "WHERE task = 'park.noop'").fetchone() or (0.0, 0.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGTERM)  # the held job is not waited for
            proc.wait(timeout=30)
            log.close()
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return n / (last - first)


def main() -> int:
    parser = argparse.ArgumentParser(description="a full key's backlog on PostgreSQL")
    parser.add_argument("--database", default=os.environ.get("LITEJOBS_TEST_POSTGRES"))
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--src", default=os.path.dirname(HERE))
    parser.add_argument("--enqueue", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enqueue:
        backlog, n = (int(x) for x in args.enqueue.split(","))
        enqueue(backlog, n)
        return 0
    if not args.database:
        raise SystemExit("bench: give --database postgresql://... (or set "
                         "LITEJOBS_TEST_POSTGRES; .ci/postgres start prints one)")
    for _ in range(args.repeat):
        rate = drain(args.database, args.backlog, args.jobs, os.path.abspath(args.src))
        print(f"backlog {args.backlog}: {args.jobs} plain jobs at {rate:.0f} jobs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
