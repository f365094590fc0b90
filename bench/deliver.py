"""Deliveries per second to a local receiver, with 2 workers.

    python bench/deliver.py [--jobs N] [--repeat R] [--write]

A receiver process on 127.0.0.1 (asyncio, HTTP/1.1 keep-alive, answers 200 with a small JSON
body at once) stands for the destination; ``litejobs run --workers 2`` delivers N jobs
enqueued beforehand with ``app.deliver`` (JSON body of ~100 bytes), unsigned and signed in
turn. Timed from the first attempt's start to the last one's finish (the jobs' own
timestamps), so enqueueing and the supervisor's start-up are left out. Prints the medians of
R runs; ``--write`` replaces the section "Deliveries (bench/deliver.py)" of
bench/results-http.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from core import reader  # noqa: E402

RESULTS = os.path.join(HERE, "results-http.md")
HEADING = "## Deliveries (bench/deliver.py)"
DEADLINE = 300.0
REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
         b'{"ok":true}')


async def _serve(sock: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                writer.write(REPLY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()

    server = await asyncio.start_server(handle, sock=sock)
    async with server:
        await server.serve_forever()


def receive(sock: socket.socket) -> None:
    asyncio.run(_serve(sock))


def one_run(workdir: str, n: int, run: int, signed: bool, port: int) -> float:
    import litejobs

    db = os.path.join(workdir, f"deliver-{run}.db")
    app = litejobs.App(db)
    url = f"http://127.0.0.1:{port}/hook"
    for i in range(n):
        app.deliver(url, json={"order": i, "customer": "ada@example.com", "total": 42.5,
                               "items": ["a", "b", "c"]})
    conn = reader(db)
    if signed:
        os.environ["LITEJOBS_SIGNING_SECRET"] = "bench-secret"  # the workers inherit it
    try:
        with supervisor(workdir, db, os.path.join(workdir, f"run-{run}.log")) as proc:
            deadline = time.monotonic() + DEADLINE
            while _count(conn, "succeeded") < n:
                if _count(conn, "failed"):
                    raise SystemExit(f"bench: a delivery failed: {_error(conn)}")
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench: the deliveries did not all succeed in time")
                time.sleep(0.01)
    finally:
        os.environ.pop("LITEJOBS_SIGNING_SECRET", None)
    first, last = conn.execute("SELECT min(started_at), max(finished_at) FROM jobs").fetchone()
    conn.close()
    return float(n / (last - first))


@contextlib.contextmanager
def supervisor(workdir: str, db: str, log_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """``litejobs run --workers 2`` on ``db``, from ``workdir`` with an app of no task of its
    own (every App can deliver); SIGTERM on exit."""
    with open(os.path.join(workdir, "deliverapp.py"), "w") as f:
        f.write("import os, litejobs\napp = litejobs.App(os.environ['LITEJOBS_BENCH_DB'])\n")
    env = {k: v for k, v in os.environ.items() if k != "LITEJOBS_DATABASE"}
    env["LITEJOBS_BENCH_DB"] = db
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", "deliverapp:app",
           "--workers", "2", "--grace", "5"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _count(conn: sqlite3.Connection, state: str) -> int:
    return int(conn.execute("SELECT count(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0])


def _error(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT error FROM jobs WHERE state = 'failed' LIMIT 1").fetchone()
    return str(row[0]) if row else "?"


def write_section(text: str) -> None:
    old = "# HTTP benchmarks\n"
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            old = f.read()
    start = old.find(HEADING)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(HEADING))
        new = old[:start] + text + ("" if nxt < 0 else old[nxt:])
    with open(RESULTS, "w") as f:
        f.write(new.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update bench/results-http.md")
    args = parser.parse_args()
    sock = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = sock.getsockname()[1]
    rx = multiprocessing.get_context("fork").Process(target=receive, args=(sock,), daemon=True)
    rx.start()
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="litejobs-deliver-") as workdir:
        for run in range(args.repeat):
            for signed in (False, True):  # alternated, so both see the same machine
                rate = one_run(workdir, args.jobs, 2 * run + signed, signed, port)
                rates[signed].append(rate)
                print(f"run {run + 1} {'signed' if signed else 'unsigned'}: "
                      f"{rate:,.0f} deliveries/s", flush=True)
    rx.terminate()
    rows = []
    for signed, runs in rates.items():
        what = "signed (Litejobs-Signature)" if signed else "unsigned"
        median = statistics.median(runs)
        print(f"median {what}: {median:,.0f} deliveries/s")
        rows.append(f"| {args.jobs} {what} deliveries, 2 workers, first start to last "
                    f"finish | {median:,.0f} deliveries/s | "
                    f"{', '.join(f'{r:,.0f}' for r in runs)} |")
    if args.write:
        from importlib.metadata import version

        write_section(
            f"{HEADING}\n\n"
            f"`python bench/deliver.py --jobs {args.jobs} --repeat {args.repeat}` on "
            f"{dt.date.today()}, {platform.python_implementation()} "
            f"{platform.python_version()}, httpx {version('httpx')}, {os.cpu_count()} cores "
            f"(shared with other work: load average {os.getloadavg()[0]:.1f} at the end; runs "
            "vary). The receiver is a separate asyncio process "
            "answering 200 at once over keep-alive; timed from the first attempt's start to "
            "the last one's finish.\n\n"
            "| what | median | runs |\n|---|---|---|\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
