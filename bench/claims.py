"""What one claim costs as queue names and blocked jobs pile up (issue 11, defects 1 and 2).

    python bench/claims.py [--claims N] [--names N] [--blocked N]

Each setup gets a fresh database; a claim is one write transaction asking for jobs for 4
workers over the queues a supervisor serves (every queue it knows, paused ones skipped), as
``litejobs run`` does. The claimed jobs are then finished in a separate transaction that is
not timed, so every claim sees the same backlog. Prints the median and p90 ms per claim:

- 10 queue names: 10 queues of 200 queued jobs each;
- 100,000 queue names: the same 10 queues plus 99,990 names that once had jobs and are now
  empty (per-tenant queues, say);
- 50,000 blocked jobs: one concurrency key (limit 1, one job of it running) with 50,000
  queued jobs ahead of 2,000 other jobs in the same queue. The claims up to the first that
  finds jobs are shown apart (they may do one-time work: how many, and the longest); the
  median is over the claims after them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from litejobs.newjob import NewJob  # noqa: E402
from litejobs.store import QueueLimits, Store, Tx  # noqa: E402
from litejobs.store import sql as q  # noqa: E402

WORKERS = ["bench:1:w1", "bench:1:w2", "bench:1:w3", "bench:1:w4"]
LEASE = 30.0


def job(queue: str, priority: int = 0, run_at: float = 0.0, ckey: str | None = None,
        climit: int | None = None) -> NewJob:
    return NewJob(task="t.noop", queue=queue, priority=priority, args="[]", kwargs="{}",
                  run_at=run_at, max_attempts=3, timeout=None, concurrency_key=ckey,
                  concurrency_limit=climit)


def served(tx: Tx) -> list[QueueLimits]:
    """What the supervisor claims from: every known queue but the paused ones."""
    return [QueueLimits(name) for name, paused in tx.queues() if not paused]


def run_claims(store: Store, claims: int, now: float, warm: bool = False) -> list[float]:
    """Time ``claims`` claims (ms each); the jobs claimed are finished untimed. With
    ``warm``, claims that find nothing before the first that does are allowed (and timed)."""
    times: list[float] = []
    i = 0
    while len(times) < claims:
        i += 1
        t = now + i * 0.001
        start = time.perf_counter()
        rows = store.write(lambda tx, t=t: tx.claim(WORKERS, served(tx), t, LEASE))
        times.append((time.perf_counter() - start) * 1000)
        if not rows and warm and i < 1000:
            claims += 1
            continue
        warm = False
        if not rows:
            raise SystemExit("a claim found nothing: the setup is too small for --claims")
        done = [(int(r["id"]), int(r["attempt"]), "null", str(r["leased_by"]), t, t)
                for r in rows]
        store.write(lambda tx, done=done: tx.succeed_many(done))
    return times


def setup_names(store: Store, names: int, now: float) -> None:
    active = [f"q{i:02d}" for i in range(10)]
    store.insert_jobs([job(queue, run_at=now - 10) for queue in active for _ in range(200)],
                      now)
    if names > len(active):
        empty = [f"tenant-{i:06d}" for i in range(names - len(active))]

        def add(tx: Tx) -> None:
            tx.cursor.executemany(q.INSERT_QUEUE, [(name,) for name in empty])

        store.write(add)


def setup_blocked(store: Store, blocked: int, now: float) -> None:
    # the key is full: one job of it runs
    store.insert_jobs([job("default", priority=5, run_at=now - 100, ckey="k", climit=1)], now)
    rows = store.write(lambda tx: tx.claim(["other:1:w"], [QueueLimits("default")], now, 3600))
    assert len(rows) == 1
    chunk = 10_000
    for start in range(0, blocked, chunk):
        store.insert_jobs([job("default", priority=5, run_at=now - 50, ckey="k", climit=1)
                           for _ in range(min(chunk, blocked - start))], now)
    store.insert_jobs([job("default", run_at=now - 10) for _ in range(2000)], now)


def measure(label: str, setup: Callable[[Store, float], None], claims: int,
            first_apart: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="litejobs-claims-") as tmp:
        store = Store(os.path.join(tmp, "jobs.db"), durability="fast")
        now = time.time()
        setup(store, now)
        times = run_claims(store, claims + (1 if first_apart else 0), now, first_apart)
        first = ""
        if first_apart:
            warm = len(times) - claims
            first = f"  (first {warm} claim(s): longest {max(times[:warm]):.2f} ms)"
            times = times[warm:]
        times.sort()
        p90 = times[int(len(times) * 0.9) - 1]
        print(f"{label:<42} {statistics.median(times):8.3f} ms  p90 {p90:8.3f} ms{first}",
              flush=True)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, default=200, help="claims timed per setup")
    parser.add_argument("--names", type=int, default=100_000, help="queue names in all")
    parser.add_argument("--blocked", type=int, default=50_000, help="blocked jobs of one key")
    opts = parser.parse_args()
    if opts.claims * len(WORKERS) > 2000:
        parser.error("--claims: at most 500 (the setups hold 2,000 claimable jobs)")
    print(f"ms per claim ({len(WORKERS)} workers), median of {opts.claims} claims")
    measure("10 queue names", lambda s, now: setup_names(s, 10, now), opts.claims)
    measure(f"{opts.names:,} queue names (10 with jobs)",
            lambda s, now: setup_names(s, opts.names, now), opts.claims)
    measure(f"{opts.blocked:,} blocked jobs of one key ahead",
            lambda s, now: setup_blocked(s, opts.blocked, now), opts.claims, first_apart=True)


if __name__ == "__main__":
    main()
