"""HTTP enqueue against in-process enqueue.

    python bench/http_enqueue.py [--requests 4000] [--clients 8] [--jobs 4000] [--dir DIR]
                         [--profile SECONDS] [--out bench/results-http.md]

For each durability ("fast", then "full"), on a fresh file each:

1. in-process: ``task.enqueue`` one by one, ``--jobs`` calls (one transaction each), each call
   timed (p50, p99) and the whole (jobs/s);
2. over HTTP: ``litejobs serve --api`` on the file (uvicorn, one process), ``--clients``
   concurrent keep-alive connections from a small asyncio client (raw HTTP/1.1: the client
   must not be what is measured on a 2-core machine), ``--requests`` ``POST /api/v1/jobs``
   in all after 200 warm-up ones; each request timed from its first byte sent to its
   response's last byte (p50, p99) and the whole (jobs/s). Every answer must be 201 and the
   file must hold every job.

With ``--profile S`` py-spy (``pip install py-spy``) samples the server for S seconds of the
"fast" HTTP run, and the functions with the most samples (own time, and with their callees)
are printed and written with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import benchapp  # noqa: E402  (bench/benchapp.py)
import core  # noqa: E402  (bench/core.py: fresh files, the machine lines)

TOKEN = "bench-token-0123456789abcdef"
#: --gil: profile only the samples that hold the GIL (py-spy --gil), i.e. Python's own work.
GIL = False
WARM_UP = 200


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def in_process(workdir: str, n: int, durability: str) -> dict[str, float]:
    app, task = benchapp.make_app(core.fresh(workdir, f"inproc-{durability}.db"), durability)
    task.enqueue(0)  # the file and schema outside the timing
    times: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        task.enqueue(i)
        times.append(time.perf_counter() - t)
    took = time.perf_counter() - start
    app.store.close()
    return {"rate": n / took, "p50": pct(times, 50) * 1000, "p99": pct(times, 99) * 1000}


@contextlib.contextmanager
def server(db: str, durability: str, log_path: str) -> Iterator[tuple[str, int, int]]:
    """``litejobs serve --api`` on ``db``: yields (host, port, pid); SIGTERM at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    # The server imports benchapp from a copy beside the files: with bench/ on its path, this
    # file would be the standard library's http package to uvicorn.
    app_dir = os.path.join(os.path.dirname(db), "app")
    os.makedirs(app_dir, exist_ok=True)
    shutil.copy(benchapp.__file__, os.path.join(app_dir, "benchapp.py"))
    env.update(LITEJOBS_BENCH_DB=db, LITEJOBS_BENCH_DURABILITY=durability,
               LITEJOBS_API_TOKEN=TOKEN,
               PYTHONPATH=os.pathsep.join([app_dir, os.path.dirname(HERE)]))
    cmd = [sys.executable, "-m", "litejobs", "serve", "--api", "--app", "benchapp:app",
           "--database", db, "--bind", "127.0.0.1:0"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=app_dir, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                found = re.search(r"on http://([\d.]+):(\d+)/", f.read())
            if found:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"litejobs serve did not start: see {log_path}")
            time.sleep(0.05)
        yield found.group(1), int(found.group(2)), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def one_client(host: str, port: int, count: int, times: list[float],
                     statuses: collections.Counter[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in range(count):
            body = json.dumps({"task": benchapp.TASK, "args": [i]}).encode()
            request = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\n"
                       f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            times.append(time.perf_counter() - t)
            statuses[int(head.split(b" ", 2)[1])] += 1
    finally:
        writer.close()


async def load(host: str, port: int, total: int, clients: int,
               ) -> tuple[float, list[float], collections.Counter[int]]:
    times: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    per = [total // clients + (1 if c < total % clients else 0) for c in range(clients)]
    start = time.perf_counter()
    await asyncio.gather(*(one_client(host, port, n, times, statuses) for n in per))
    return time.perf_counter() - start, times, statuses


def over_http(workdir: str, total: int, clients: int, durability: str,
              profile: float) -> tuple[dict[str, float], list[str]]:
    db = core.fresh(workdir, f"http-{durability}.db")
    app, _ = benchapp.make_app(db, durability)
    app.enqueue(benchapp.TASK, [0])
    app.store.close()
    profiled: list[str] = []
    with server(db, durability, os.path.join(workdir, f"serve-{durability}.log")) as (
            host, port, pid):
        asyncio.run(load(host, port, WARM_UP, clients))
        spy = None
        if profile:
            raw = os.path.join(workdir, "profile.txt")
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration",
                                    str(int(profile)), "--rate", "250", "--format", "raw",
                                    "--nonblocking", *(["--gil"] if GIL else []), "-o", raw],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
        took, times, statuses = asyncio.run(load(host, port, total, clients))
        if spy is not None:
            spy.wait()
            profiled = summarize(raw)
    if set(statuses) != {201}:
        raise SystemExit(f"answers other than 201: {dict(statuses)}")
    stored = benchapp.make_app(db, durability)[0].stats()["states"]["queued"]
    expected = 1 + WARM_UP + total
    if stored != expected:
        raise SystemExit(f"{stored} jobs in the file, {expected} expected")
    return {"rate": total / took, "p50": pct(times, 50) * 1000,
            "p99": pct(times, 99) * 1000}, profiled


def summarize(raw_path: str, top: int = 14) -> list[str]:
    """py-spy's collapsed stacks as the functions with the most samples: on the stack
    (inclusive) and at its top (own time); idle threads' waits left out."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count_text = line.rstrip().rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            frames = [re.sub(r" \(([^)]*/)?([^/)]+)\)$", r" (\2)", fr)
                      for fr in stack.split(";")]
            leaf = frames[-1]
            if any(w in leaf for w in ("select (", "_worker (", "wait (", "poll (")):
                continue  # a thread waiting for work is not time a request costs
            n = int(count_text)
            total += n
            own[leaf] += n
            for fr in set(frames):
                inclusive[fr] += n
    lines = [f"busy samples: {total}", "", "| own time | function |", "|---:|---|"]
    lines += [f"| {n / total:.1%} | `{fn}` |" for fn, n in own.most_common(top)]
    lines += ["", "| with callees | function |", "|---:|---|"]
    lines += [f"| {n / total:.1%} | `{fn}` |" for fn, n in inclusive.most_common(top * 2)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--dir", help="where the database files go (default: a temp dir)")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--gil", action="store_true",
                        help="with --profile: only samples holding the GIL (py-spy --gil)")
    parser.add_argument("--out", default=os.path.join(HERE, "results-http.md"))
    args = parser.parse_args()
    global GIL
    GIL = args.gil
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    workdir = args.dir or tempfile.mkdtemp(prefix="litejobs-bench-http-")
    rows = ["| durability | path | jobs/s | p50 | p99 |", "|---|---|---:|---:|---:|"]
    profiled: list[str] = []
    for durability in ("fast", "full"):
        local = in_process(workdir, args.jobs, durability)
        remote, prof = over_http(workdir, args.requests, args.clients, durability,
                                 args.profile if durability == "fast" else 0)
        profiled = profiled or prof
        rows.append(f"| {durability} | `task.enqueue`, in-process, one by one | "
                    f"{local['rate']:,.0f} | {local['p50']:.2f} ms | {local['p99']:.2f} ms |")
        rows.append(f"| {durability} | `POST /api/v1/jobs`, {args.clients} keep-alive clients | "
                    f"{remote['rate']:,.0f} | {remote['p50']:.2f} ms | "
                    f"{remote['p99']:.2f} ms |")
        print("\n".join(rows[-2:]), flush=True)
    out = ["# HTTP enqueue (bench/http_enqueue.py)", "", *core.machine(workdir), "",
           f"{args.jobs} in-process calls; {args.requests} HTTP requests after {WARM_UP} "
           f"warm-up ones, {args.clients} connections.", "", *rows]
    if profiled:
        gil = ", samples holding the GIL only" if args.gil else ""
        out += ["", f"## Where the server's time goes (py-spy, {args.profile:g} s, durability "
                f"fast{gil})", "", *profiled]
        print("\n".join(profiled))
    if args.out != "-":
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
