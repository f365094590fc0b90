"""What flow keys cost (issue 14, item 4): claims and pickup with 10,000 keys blocked.

    python bench/flowkeys.py [--keys N] [--claims N] [--pickups N] [--database DB] [--out FILE]

- claim cost: one write transaction claiming for 4 workers (as ``litejobs run`` does), the
  jobs claimed then finished untimed. Setups: plain jobs alone; the same with N keys (default
  10,000) blocked by their rate ("1/h", one start each, two more jobs of each parked) and one
  key with a 5,000-job backlog at "1/s"; and the moment the N keys' windows all end at once
  (the claims that give their jobs back: how many and the longest).
- pickup: an idle ``litejobs run --workers 2`` on a file with and without those blocked keys;
  jobs enqueued 10 ms apart, alternately plain and of a fresh key with a rate ("10/s", never
  reached), ``started_at - created_at``.

``--database`` picks the store: a directory for the SQLite files (default: a temporary one)
or a ``postgresql://`` URL, on whose server each setup gets a fresh schema (dropped after).
On PostgreSQL "all windows end at once" is left out: its claims judge windows on the
server's clock, not the ``at`` a caller gives.

Prints a table and appends it to bench/results-limits.md. This file is also the app the
supervisor runs (``--app bench/flowkeys.py:app``, on ``$LITEJOBS_BENCH_DB``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from storedb import Databases, Reader  # noqa: E402

import litejobs  # noqa: E402
from litejobs.store import QueueLimits, Store, Tx  # noqa: E402

WORKERS = ["bench:1:w1", "bench:1:w2", "bench:1:w3", "bench:1:w4"]
LEASE = 30.0
BACKLOG = 5000


def noop(i: int = 0) -> None:
    """Does nothing: what is measured is litejobs."""


def make_app(path: str) -> litejobs.App:
    app = litejobs.App(path, durability="fast")
    app.task(name="fk.noop", retries=0)(noop)
    return app


app = make_app(os.environ.get("LITEJOBS_BENCH_DB") or os.path.join(HERE, "flowkeys.db"))


def claim(store: Store, at: float, workers: list[str] = WORKERS) -> tuple[int, float]:
    """One claim at ``at``, timed (ms); its jobs are then finished, untimed."""
    start = time.perf_counter()
    rows = store.write(lambda tx: tx.claim(workers, [QueueLimits("default")], at, LEASE))
    took = (time.perf_counter() - start) * 1000
    done = [(int(r["id"]), int(r["attempt"]), "null", str(r["leased_by"]), at, at)
            for r in rows]
    if done:
        store.write(lambda tx: tx.succeed_many(done))
    return len(rows), took


def parked(store: Store) -> int:
    def count(tx: Tx) -> int:
        return int(tx.cursor.execute("SELECT count(*) FROM jobs WHERE parked = 1").fetchone()[0])

    def count_pg(tx: Any) -> int:
        return int(tx.conn.execute("SELECT count(*) AS n FROM jobs WHERE parked"
                                   ).fetchone()["n"])
    return store.write(count if isinstance(store, Store) else count_pg)


def enqueue_blocked(a: litejobs.App, keys: int) -> int:
    """``keys`` keys of 3 jobs each at "1/h", one key of ``BACKLOG`` jobs at "1/s"; returns
    how many of them a claim parks (all but each key's first)."""
    for round_ in range(3):  # round-robin: each claim starts the first jobs of many keys
        a.enqueue_many([a.tasks["fk.noop"].options(flow_key=f"key{k}", rate_limit="1/h")
                        .prepare(round_) for k in range(keys)])
    a.enqueue_many([a.tasks["fk.noop"].options(flow_key="backlog", rate_limit="1/s")
                    .prepare(i) for i in range(BACKLOG)])
    return 2 * keys + BACKLOG - 1


def block_keys(a: litejobs.App, keys: int, now: float) -> None:
    """``enqueue_blocked``'s jobs, each key started once by stand-in workers, the rest
    parked."""
    want = enqueue_blocked(a, keys)
    stand_ins = [f"setup:1:w{i}" for i in range(200)]
    for _ in range(10_000):
        claim(a.store, now, stand_ins)
        if parked(a.store) >= want:
            # as a supervisor bounds the WAL: a long one slows every page read (a frame
            # lookup goes through each 4096-frame index of the WAL)
            if isinstance(a.store, Store):
                a.store.checkpoint(truncate=True)
            return
    raise SystemExit(f"bench: the keys did not all block ({parked(a.store)} of {want} parked)")


def plain_jobs(a: litejobs.App, n: int) -> None:
    a.enqueue_many([a.tasks["fk.noop"].prepare(i) for i in range(n)])


def timed_claims(a: litejobs.App, claims: int, at: float) -> list[float]:
    plain_jobs(a, claims * len(WORKERS))
    times = []
    for i in range(claims):
        got, took = claim(a.store, at + i * 0.0001)
        if got != len(WORKERS):
            raise SystemExit(f"bench: a claim got {got} jobs, not {len(WORKERS)}")
        times.append(took)
    return sorted(times)


def claims_cost(keys: int, claims: int, blocked: bool, dbs: Databases) -> dict[str, Any]:
    if True:
        path = dbs.fresh(f"jobs-{int(blocked)}.db")
        a = make_app(path)
        now = time.time()
        out: dict[str, Any] = {}
        if blocked:
            block_keys(a, keys, now)
            # the connection that did the setup (see the results' note), then a new one
            out["same"] = statistics.median(timed_claims(a, claims, now + 0.5))
            a.store.close()
            a = make_app(path)
        times = timed_claims(a, claims, now + 1)
        out.update(median=statistics.median(times), p90=times[int(len(times) * 0.9) - 1])
        if blocked and isinstance(a.store, Store):
            # every "1/h" window ends at once: the claims that give each key a job back
            # (SQLite only: a PostgreSQL claim's times are the server's, not the ``at`` given)
            later = now + 3600 + 0.2
            ended: list[float] = []
            while True:
                got, took = claim(a.store, later)
                ended.append(took)
                if not got:
                    break
                later += 0.0001
            out["ended"] = (len(ended), max(ended), parked(a.store))
        a.store.close()
        return out


def pickup(keys: int, count: int, blocked: bool, workdir: str,
           dbs: Databases) -> dict[str, list[float]]:
    db = dbs.fresh(f"pickup-{int(blocked)}.db")
    a = make_app(db)
    a.enqueue("fk.noop", args=[-1])  # its pickup shows the supervisor is ready
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env["LITEJOBS_BENCH_DB"] = db
    log = open(os.path.join(workdir, "supervisor.log"), "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "litejobs", "run", "--app", f"{HERE}/flowkeys.py:app",
         "--database", db, "--workers", "2", "--grace", "5"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    conn = Reader(db)

    def wait(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not done():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the supervisor stopped or timed out ({workdir})")
            time.sleep(0.01)

    ids: dict[str, list[int]] = {"plain": [], "fresh key": []}
    try:
        wait(lambda: conn.execute(
            "SELECT count(*) FROM jobs WHERE args = '[-1]' AND state = 'succeeded'"
        ).fetchone()[0] == 1)
        if blocked:  # the supervisor itself starts each key once and parks the rest
            want = enqueue_blocked(a, keys)
            wait(lambda: conn.execute(
                "SELECT count(*) FROM jobs WHERE parked" + ("" if conn.pg else " = 1")
            ).fetchone()[0] >= want)
        for i in range(count):
            if i % 2:
                ids["fresh key"].append(a.enqueue("fk.noop", args=[i], flow_key=f"fresh{i}",
                                                  rate_limit="10/s").id)
            else:
                ids["plain"].append(a.enqueue("fk.noop", args=[i]).id)
            time.sleep(0.010)
        wait(lambda: all(conn.execute(
            "SELECT state FROM jobs WHERE id = ?", (i,)).fetchone()[0] == "succeeded"
            for i in ids["plain"] + ids["fresh key"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    out = {kind: sorted(float(conn.execute(
        "SELECT (started_at - created_at) * 1000 FROM jobs WHERE id = ?", (i,)).fetchone()[0])
        for i in kind_ids) for kind, kind_ids in ids.items()}
    conn.close()
    a.store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000, help="blocked keys")
    parser.add_argument("--claims", type=int, default=300, help="claims timed per setup")
    parser.add_argument("--pickups", type=int, default=200, help="jobs timed per setup")
    parser.add_argument("--database", help="a directory for the SQLite files (default: a "
                        "temporary one) or a postgresql:// URL (a fresh schema per setup)")
    parser.add_argument("--out", default=os.path.join(HERE, "results-limits.md"))
    opts = parser.parse_args()
    dbs = Databases(opts.database)
    try:
        return run(opts, dbs)
    finally:
        dbs.close()


def run(opts: argparse.Namespace, dbs: Databases) -> int:
    store = "PostgreSQL" if dbs.tmp is None else "SQLite"
    lines = [
        "", f"## {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} — "
        f"`python bench/flowkeys.py --keys {opts.keys}` (flow keys, issue 14)"
        + ("" if store == "SQLite" else f", {store}"), "",
        f"{opts.keys:,} keys blocked by their rate (\"1/h\", one start each, 2 jobs of each "
        f"parked) and a {BACKLOG:,}-job backlog of one key at \"1/s\"; claims for 4 workers, "
        "ms; pickup of an idle `litejobs run --workers 2`, jobs 10 ms apart, ms.", "",
        "| figure | no keys blocked | keys blocked |", "|---|---:|---:|"]
    base = claims_cost(opts.keys, opts.claims, False, dbs)
    with_keys = claims_cost(opts.keys, opts.claims, True, dbs)
    lines.append(f"| claim of 4 plain jobs, median | {base['median']:.3f} | "
                 f"{with_keys['median']:.3f} |")
    lines.append(f"| claim of 4 plain jobs, p90 | {base['p90']:.3f} | {with_keys['p90']:.3f} |")
    lines.append(f"| the same, median, in the connection that parked the keys | — | "
                 f"{with_keys['same']:.3f} |")
    print("\n".join(lines[-2:]), flush=True)
    with tempfile.TemporaryDirectory(prefix="litejobs-flowkeys-") as workdir:
        free = pickup(opts.keys, opts.pickups, False, workdir, dbs)
        held = pickup(opts.keys, opts.pickups, True, workdir, dbs)
    for kind in ("plain", "fresh key"):
        for name, q in (("p50", 50), ("p99", 99)):
            def cut(s: list[float], q: int = q) -> float:
                return statistics.quantiles(s, n=100, method="inclusive")[q - 1]
            lines.append(f"| pickup, {kind} job, {name} | {cut(free[kind]):.2f} | "
                         f"{cut(held[kind]):.2f} |")
    if "ended" not in with_keys:
        lines += ["", f"Load average at the end: {os.getloadavg()[0]:.2f}.", ""]
        print("\n".join(lines[-3:]))
        with open(opts.out, "a", encoding="utf-8") as f:
            f.write("\n".join(lines))
        print(f"appended to {opts.out}")
        return 0
    n, longest, left = with_keys["ended"]
    lines += ["", f"When all {opts.keys:,} windows end at once, the claims that follow give "
              "each key's best parked job back (at most 100 keys a claim) and start them, "
              f"4 a claim: {n:,} claims, the longest {longest:.1f} ms; {left:,} jobs stay "
              "parked (each key's last job, and the backlog's).", ""]
    print("\n".join(lines[-6:]))
    with open(opts.out, "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"appended to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
