"""Where supervisors sharing one PostgreSQL wait on each other during a drain (issue 16).

    python bench/pg_waits.py [--url URL] [--jobs N] [--supervisors S] [--workers K]
                             [--runs R] [--no-sample] [--src DIR,...]

On the server of ``--url`` (default: $LITEJOBS_TEST_POSTGRES, the ``.ci/postgres`` one) it
creates a database of its own (dropped at the end), and for each run a fresh schema with N
queued no-op jobs; then starts S ``litejobs run --workers K`` and times the drain (first
success seen to the last). Meanwhile, unless --no-sample, it samples pg_stat_activity every
10 ms: each supervisor connection's state (in a statement, idle in a transaction, idle), its
wait (``Lock`` waits by the table its statement writes: a row lock another supervisor's
transaction holds), so the share of the supervisors' transaction time spent waiting on each
other's locks, and on which table, is read off. ``--src A,B`` runs each round once per
checkout (interleaved: A, B, A, B...) for a before/after; the default is this one.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DB = "litejobs_pg_waits"

APP = '''
import os
import litejobs
app = litejobs.App(os.environ["LJ_DATABASE"])

@app.task(name="bench.noop", retries=0)
def noop(i: int = 0) -> None:
    pass
'''

SAMPLE = """
SELECT a.pid, a.state, a.wait_event_type AS wtype, a.wait_event AS wait, a.query
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend' AND a.query NOT LIKE 'LISTEN%%'
  AND a.application_name <> 'pg_waits'
"""
TABLE = re.compile(r"(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|FROM|LOCK\s+TABLE)\s+(\w+)", re.I)


def _with_db(url: str, db: str) -> str:
    base, _, query = url.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{db}" + (f"?{query}" if query else "")


def _schema_url(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


class Sampler(threading.Thread):
    """Every 10 ms: what each supervisor connection is doing."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, application_name="pg_waits") as conn:
            while not self.stop.is_set():
                rows = conn.execute(SAMPLE).fetchall()
                self.samples += 1
                for _pid, state, wtype, wait, query in rows:
                    self.counts[_classify(state, wtype, wait, query)] += 1
                time.sleep(0.01)


def _classify(state: str | None, wtype: str | None, wait: str | None, query: str) -> str:
    if state == "idle":
        return "idle (no transaction)"
    if state == "idle in transaction":
        return "in transaction: client's turn (between statements)"
    if wtype == "Lock":
        m = TABLE.search(query or "")
        what = m.group(1) if m else " ".join((query or "?").split())[:60]
        return f"in transaction: LOCK WAIT {wait} on {what}"
    if wtype in ("IO", "IPC", "LWLock"):
        m = TABLE.search(query or "")
        what = "COMMIT" if (query or "").strip().upper().startswith("COMMIT") else (
            m.group(1) if m else "?")
        return f"in transaction: server {wtype}:{wait} ({what})"
    if wtype == "Client":
        return "in transaction: waiting for the client's bytes"
    return "in transaction: server running a statement"


def one_run(url: str, src: str, jobs: int, sups: int, workers: int, sample: bool,
            tmp: str, n: int) -> tuple[float, Sampler | None]:
    import psycopg

    schema = f"w{os.getpid()}_{n}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    surl = _schema_url(url, schema)
    env = {**os.environ, "LJ_DATABASE": surl,
           "PYTHONPATH": os.pathsep.join([tmp, src])}
    fill = (f"import sys; sys.path[:0] = [{tmp!r}, {src!r}]; import pg_waits_app as m; "
            f"m.app.enqueue_many([m.noop.prepare(i) for i in range({jobs})]); "
            "m.app.store.close()")
    subprocess.run([sys.executable, "-c", fill], env=env, check=True, cwd=tmp)
    sampler = Sampler(url) if sample else None
    cmd = [sys.executable, "-m", "litejobs", "run", "--database", surl,
           "--app", "pg_waits_app:app", "--workers", str(workers), "--grace", "5"]
    procs = [subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(sups)]
    first = last = None
    try:
        if sampler:
            sampler.start()
        with psycopg.connect(surl, autocommit=True, application_name="pg_waits") as conn:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                done = conn.execute(
                    "SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
                t = time.monotonic()
                if done and first is None:
                    first = (t, done)
                if done >= jobs:
                    last = t
                    break
                time.sleep(0.05)
    finally:
        if sampler:
            sampler.stop.set()
            sampler.join()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    if first is None or last is None:
        raise SystemExit(f"run {n}: the drain did not finish")
    return (jobs - first[1]) / max(last - first[0], 1e-9), sampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("LITEJOBS_TEST_POSTGRES", ""))
    ap.add_argument("--jobs", type=int, default=4000)
    ap.add_argument("--supervisors", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--src", default=REPO, help="checkouts to run, comma-separated")
    args = ap.parse_args()
    if not args.url:
        raise SystemExit("no server: pass --url or set LITEJOBS_TEST_POSTGRES "
                         "(`.ci/postgres start` prints one)")
    import psycopg

    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.execute(f"CREATE DATABASE {DB}")
    url = _with_db(args.url, DB)
    srcs = [os.path.abspath(s) for s in args.src.split(",")]
    rates: dict[str, list[float]] = {s: [] for s in srcs}
    counts: dict[str, collections.Counter[str]] = {s: collections.Counter() for s in srcs}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "pg_waits_app.py"), "w") as f:
                f.write(APP)
            n = 0
            for r in range(args.runs):
                for src in srcs:
                    n += 1
                    rate, sampler = one_run(url, src, args.jobs, args.supervisors,
                                            args.workers, not args.no_sample, tmp, n)
                    rates[src].append(rate)
                    if sampler:
                        counts[src].update(sampler.counts)
                    print(f"round {r + 1} {src}: {rate:,.0f} jobs/s", flush=True)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    for src in srcs:
        print(f"\n{src}: {args.supervisors} supervisors x {args.workers} workers, "
              f"{args.jobs} jobs: median {statistics.median(rates[src]):,.0f} jobs/s "
              f"({', '.join(f'{x:,.0f}' for x in rates[src])})")
        c = counts[src]
        busy = sum(v for k, v in c.items() if k.startswith("in transaction"))
        if busy:
            print(f"  supervisor connections in a transaction: {busy} samples; of them:")
            for k, v in c.most_common():
                if k.startswith("in transaction"):
                    print(f"    {100 * v / busy:5.1f}%  {k[len('in transaction: '):]}")
            idle = c["idle (no transaction)"]
            print(f"  (and {idle} samples idle, outside any transaction)")


if __name__ == "__main__":
    main()
