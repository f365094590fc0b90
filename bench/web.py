"""The dashboard's benchmark: the jobs pages and the overview at 1,000,000 jobs, and what
serving the dashboard to an open tab costs a draining supervisor.

    python bench/web.py [--jobs 1000000] [--requests 50] [--drain 20000] [--tries 5]
                        [--dir DIR] [--keep] [--out bench/results-web.md]

1. A file with ``--jobs`` jobs, built fast with ``app.enqueue_many`` (the store's executemany
   insert), in id order a realistic mix: 20 tasks of very different frequency plus a rare one
   (one job in 25,000), three queues, a tag on one job in ten (``customer-N``; the tag timed is
   one job in 5,000), a few workflow runs; then, by plain SQL in one transaction (a setup
   shortcut: the states a real supervisor would have written), 93 % succeeded, 4 % failed,
   1 % cancelled among the older jobs, the newest 2 % queued or scheduled, 50 running.
2. Each page timed ``--requests`` times (p50, p95) in-process (Starlette's TestClient, the ASGI
   app called directly) and over real HTTP (``litejobs serve``: uvicorn, keep-alive client):
   ``/jobs``, ``/jobs?state=failed``, the rare task, the tag, the second page, and ``/``.
   Target: p95 < 100 ms.
3. The drain rate of ``--drain`` no-op jobs by ``litejobs run --workers 2`` (first start to last
   finish), alone and with ``litejobs serve`` on the same file polled like an open tab (``/``
   and ``/supervisors`` once a second), interleaved ``--tries`` times each; the medians are
   compared. Target: < 5 % cost.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import benchapp  # noqa: E402  (bench/benchapp.py)
import core  # noqa: E402  (bench/core.py: the supervisor, the machine lines)

import litejobs  # noqa: E402
from litejobs.task import PLAIN, CallOptions, Prepared  # noqa: E402

TASKS = [f"shop.task_{i:02d}" for i in range(20)]
RARE_TASK = "shop.rare_refund"
RARE_EVERY = 25_000
TAG_EVERY = 5_000
TIMED_TAG = "customer-42"
CHUNK = 10_000
TARGET_MS = 100.0
DRAIN_TARGET = 5.0


# --- the million-job file ----------------------------------------------------------------------


def task_of(i: int) -> str:
    if i % RARE_EVERY == RARE_EVERY // 2:
        return RARE_TASK
    # a skewed mix: task_00 is ~1/2 of the jobs, task_01 ~1/4, …, the last ones rare
    k = 0
    x = (i * 2654435761) % 2**20
    while x & 1 and k < len(TASKS) - 1:
        x >>= 1
        k += 1
    return TASKS[k]


def call_of(i: int) -> Prepared:
    queue = "mail" if i % 5 == 1 else "reports" if i % 10 == 3 else None
    tags = None
    if i % TAG_EVERY == 7:
        tags = [TIMED_TAG]
    elif i % 10 == 0:
        tags = [f"customer-{1000 + i % 997}"]
    options = CallOptions(queue=queue, tags=tags) if queue or tags else PLAIN
    return Prepared(task_of(i), (i, f"order-{i:07d}"), {"note": "ok" if i % 3 else "retry"},
                    options)


def build(path: str, n: int) -> None:
    app = litejobs.App(path, durability="fast")
    start = time.perf_counter()
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        app.enqueue_many([call_of(i) for i in range(done, done + size)])
        done += size
        print(f"\r  enqueued {done:,}/{n:,}", end="", flush=True)
    for r in range(5):  # a few workflow runs (newest): a chain with a fan-in
        flow = app.workflow(f"etl-{r}")
        first = flow.add(Prepared("etl.extract", (r,), {}))
        mids = [flow.add(Prepared("etl.transform", (r, k), {}), after=first) for k in range(8)]
        flow.add(Prepared("etl.load", (r,), {}), after=mids)
        flow.enqueue(app)
    app.store.close()
    print(f"\r  enqueued {n:,} jobs in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    top = conn.execute("SELECT max(id) FROM jobs").fetchone()[0]
    fresh = top - n // 50  # the newest 2 % stay queued or scheduled
    conn.execute("BEGIN IMMEDIATE")
    # queued -> running -> an end: the transitions the schema's trigger allows
    conn.execute("""UPDATE jobs SET state = 'running', attempt = 1, leased_by = 'bench:w1',
                    lease_until = created_at + 60, started_at = created_at + 0.2
                    WHERE id <= ? AND workflow IS NULL AND id % 100 != 98""", (fresh,))
    conn.execute("""UPDATE jobs SET state = 'failed', finished_at = started_at + 0.3,
                    error = 'ConnectionError: payment gateway timed out', leased_by = NULL,
                    lease_until = NULL WHERE state = 'running' AND id % 25 = 4""")
    conn.execute("""UPDATE jobs SET state = 'succeeded', finished_at = started_at + 0.05,
                    result = 'null', leased_by = NULL, lease_until = NULL
                    WHERE state = 'running' AND id > 1000""")
    conn.execute("""UPDATE jobs SET state = 'cancelled', finished_at = created_at + 1,
                    error = 'cancelled' WHERE state = 'queued' AND id <= ?""", (fresh,))
    conn.execute("""UPDATE jobs SET state = 'scheduled', run_at = created_at + 3600
                    WHERE state = 'queued' AND id > ? AND id % 3 = 0""", (fresh,))
    conn.execute("""UPDATE jobs SET lease_until = 4102444800 WHERE state = 'running'
                    AND id IN (SELECT id FROM jobs WHERE state = 'running' LIMIT 50)""")
    conn.execute("""UPDATE jobs SET state = 'succeeded', finished_at = started_at + 0.05,
                    leased_by = NULL, lease_until = NULL WHERE state = 'running'
                    AND lease_until < 4102444800""")
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    conn.close()
    print(f"  states set in {time.perf_counter() - start:.1f} s: {counts}", flush=True)


# --- timing pages ------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95


def time_pages(get: Callable[[str], Any], paths: dict[str, str], requests: int,
               ) -> dict[str, tuple[float, float]]:
    out = {}
    for name, path in paths.items():
        for _ in range(3):  # warm: the page cache, the statement cache, the templates
            get(path)
        samples = []
        for _ in range(requests):
            start = time.perf_counter()
            answer = get(path)
            samples.append((time.perf_counter() - start) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"bench: {path} answered {answer.status_code}")
        out[name] = percentiles(samples)
        print(f"  {name:<34} p50 {out[name][0]:7.1f} ms   p95 {out[name][1]:7.1f} ms",
              flush=True)
    return out


def page_paths(get: Callable[[str], Any]) -> dict[str, str]:
    first = get("/jobs").text
    older = re.search(r'href="[^"]*/jobs\?before=(\d+)"', first)
    if older is None:
        raise SystemExit("bench: the first jobs page has no 'older' link")
    return {"/jobs (no filter)": "/jobs", "/jobs?state=failed": "/jobs?state=failed",
            f"/jobs?task= (1 in {RARE_EVERY:,})": f"/jobs?task={RARE_TASK}",
            f"/jobs?tag= (1 in {TAG_EVERY:,})": f"/jobs?tag={TIMED_TAG}",
            "/jobs second page": f"/jobs?before={older.group(1)}",
            "/ (overview)": "/"}


@contextlib.contextmanager
def served(db: str, log_path: str, app: str | None = None,
           procs: list[subprocess.Popen[bytes]] | None = None) -> Iterator[str]:
    """``litejobs serve`` on ``db`` (a free loopback port); yields its URL (its process goes
    in ``procs``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env["LITEJOBS_BENCH_DB"] = db
    cmd = [sys.executable, "-m", "litejobs", "serve", "--database", db,
           "--bind", "127.0.0.1:0"] + (["--app", app] if app else [])
    log = open(log_path, "ab")  # noqa: SIM115  (closed below)
    start = log.tell()  # the log is shared: read only what this server writes
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
    if procs is not None:
        procs.append(proc)
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None:
            with open(log_path, errors="replace") as f:
                f.seek(start)
                found = re.findall(r"on (http://\S+?)/? for", f.read())
            if found:
                url = found[-1]
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: litejobs serve did not start (log: {log_path})")
            else:
                time.sleep(0.05)
        yield url.rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def make_asgi() -> Any:
    """``uvicorn --factory web:make_asgi``: the dashboard of $LITEJOBS_BENCH_DB."""
    from litejobs.web import asgi

    return asgi(litejobs.App(os.environ["LITEJOBS_BENCH_DB"]))


@contextlib.contextmanager
def uvicorn_served(db: str, log_path: str) -> Iterator[str]:
    """uvicorn's own command line (its own socket) serving ``make_asgi``; yields its URL."""
    import socket

    with socket.socket() as probe:  # a free port (the bench's own machine: no race to fear)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env["LITEJOBS_BENCH_DB"] = db
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "web:make_asgi", "--host",
           "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/static/jobs.css", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: uvicorn did not start (log: {log_path})") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def pages(db: str, requests: int, log_path: str) -> list[str]:
    import httpx
    from starlette.testclient import TestClient

    from litejobs.web import asgi

    print("in-process (TestClient):", flush=True)
    app = litejobs.App(db)
    with TestClient(asgi(app)) as client:
        paths = page_paths(client.get)
        inproc = time_pages(client.get, paths, requests)
    app.store.close()
    print("over HTTP (uvicorn --factory, keep-alive):", flush=True)
    with uvicorn_served(db, log_path) as url, httpx.Client(base_url=url, timeout=30) as http:
        remote = time_pages(http.get, page_paths(http.get), requests)
    print("over HTTP (litejobs serve, keep-alive):", flush=True)
    with served(db, log_path) as url, httpx.Client(base_url=url, timeout=30) as http:
        ours = time_pages(http.get, page_paths(http.get), requests)
    lines = ["| page | in-process p50 / p95 | uvicorn HTTP p50 / p95 | "
             "`litejobs serve` HTTP p50 / p95 |", "|---|---:|---:|---:|"]
    worst = 0.0
    for name in paths:
        a, b, c = inproc[name], remote[name], ours[name]
        worst = max(worst, a[1], b[1])
        lines.append(f"| `{name}` | {a[0]:.1f} / {a[1]:.1f} ms | {b[0]:.1f} / {b[1]:.1f} ms "
                     f"| {c[0]:.1f} / {c[1]:.1f} ms |")
    verdict = "met" if worst < TARGET_MS else "MISSED"
    lines += ["", f"Worst p95 in-process and over uvicorn: {worst:.1f} ms (target < "
              f"{TARGET_MS:.0f} ms: {verdict})."]
    return lines


# --- the drain with and without a dashboard tab ------------------------------------------------


def poll_tab(url: str, stop: threading.Event, counts: list[int]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            for path in ("/", "/supervisors", "/live/overview"):
                with contextlib.suppress(httpx.HTTPError):
                    http.get(path)
                    counts[0] += 1
            stop.wait(1.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain_once(workdir: str, n: int, log_path: str, with_tab: bool,
               ) -> tuple[float, float, int]:
    """One drain: (jobs/s first start to last finish, the dashboard's CPU seconds per
    wall second meanwhile, its requests)."""
    db = core.fresh(workdir, "drain-web.db")
    app, task = benchapp.make_app(db, "full")
    done = 0
    while done < n:
        size = min(1000, n - done)
        app.enqueue_many([task.prepare(i) for i in range(done, done + size)])
        done += size
    app.store.close()
    conn = core.reader(db)
    counts = [0]
    stop = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []
    cpu = 0.0
    with contextlib.ExitStack() as stack:
        if with_tab:
            url = stack.enter_context(served(db, log_path, "benchapp:app", procs))
            poller = threading.Thread(target=poll_tab, args=(url, stop, counts), daemon=True)
            poller.start()
            stack.callback(poller.join)
            stack.callback(stop.set)
            before, started = cpu_seconds(procs[0].pid), time.perf_counter()
        with core.supervisor(db, log_path) as proc:
            core.wait_succeeded(conn, n, proc, poll=0.05)
        if with_tab:
            cpu = (cpu_seconds(procs[0].pid) - before) / (time.perf_counter() - started)
    first, last = conn.execute(
        "SELECT min(started_at), max(finished_at) FROM jobs WHERE state = 'succeeded'"
    ).fetchone()
    conn.close()
    rate = n / (last - first)
    extra = (f", {counts[0]} dashboard requests, dashboard CPU {cpu * 100:.1f} % of a core"
             if with_tab else "")
    print(f"  drain {'with' if with_tab else 'without'} the dashboard: {rate:,.0f} jobs/s"
          f"{extra}", flush=True)
    return rate, cpu, counts[0]


def drains(workdir: str, n: int, tries: int, log_path: str) -> list[str]:
    alone: list[float] = []
    watched: list[float] = []
    cpus: list[float] = []
    for _ in range(tries):
        alone.append(drain_once(workdir, n, log_path, False)[0])
        rate, cpu, _ = drain_once(workdir, n, log_path, True)
        watched.append(rate)
        cpus.append(cpu)
    a, w = statistics.median(alone), statistics.median(watched)
    cost = (a - w) / a * 100
    verdict = "met" if cost < DRAIN_TARGET else "MISSED"
    return ["| run | drain rate (median of "
            f"{tries}) | each try |", "|---|---:|---|",
            f"| `litejobs run --workers 2` alone | {a:,.0f} jobs/s | "
            f"{', '.join(f'{x:,.0f}' for x in alone)} |",
            f"| the same, `litejobs serve` polled like an open tab | {w:,.0f} jobs/s | "
            f"{', '.join(f'{x:,.0f}' for x in watched)} |",
            "", f"Cost: {cost:.1f} % (target < {DRAIN_TARGET:.0f} %: {verdict}). The "
            f"dashboard process used {statistics.median(cpus) * 100:.1f} % of one core "
            "meanwhile (median; /proc CPU time over wall time), answering `/`, "
            "`/supervisors` and `/live/overview` once a second."]


def main() -> int:
    parser = argparse.ArgumentParser(description="litejobs dashboard benchmark")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--drain", type=int, default=20_000)
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--dir", help="where the database files go (default: a temp dir)")
    parser.add_argument("--db", help="reuse this million-job file (built if missing)")
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results-web.md"))
    opts = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="litejobs-bench-web-", dir=opts.dir)
    log_path = os.path.join(workdir, "bench.log")
    db = opts.db or os.path.join(workdir, "million.db")
    print(f"litejobs dashboard bench: {opts.jobs:,} jobs, files in {workdir}", flush=True)
    report = ["# Dashboard benchmark (bench/web.py)", "", *core.machine(workdir)]
    if not opts.skip_pages:
        if not os.path.exists(db):
            build(db, opts.jobs)
        report += ["", f"## Pages at {opts.jobs:,} jobs ({opts.requests} requests each)", "",
                   *pages(db, opts.requests, log_path)]
    if not opts.skip_drain:
        print(f"drain of {opts.drain:,} jobs, 2 workers:", flush=True)
        report += ["", f"## Drain of {opts.drain:,} no-op jobs, 2 workers, with and without "
                   "the dashboard", "", *drains(workdir, opts.drain, opts.tries, log_path)]
    report += ["", "## How to run", "", "```", "pip install -e '.[web]'",
               "python bench/web.py            # about 3 minutes; --db FILE reuses a built "
               "file", "```", ""]
    with open(opts.out, "w", encoding="utf-8") as f:
        f.write("\n".join(report))
    print(f"wrote {opts.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
