"""The SQLite ceiling: what raw apsw does on the same workloads, with no job system around it.

Shared by ``bench/peers.py`` (a table beside the peers) and ``bench/check.py`` (the CI check
divides each litejobs figure by these, so its verdicts do not depend on the machine's speed).
Each function takes a fresh database path and returns jobs per second.
"""

from __future__ import annotations

import time

import apsw

CHUNK = 1000


def connect(path: str, sync: str) -> apsw.Connection:
    c = apsw.Connection(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={sync}")
    c.execute("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, state INTEGER NOT NULL,"
              " task TEXT NOT NULL, args BLOB, created_at REAL, started_at REAL,"
              " finished_at REAL)")
    c.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id)")
    return c


INSERT = "INSERT INTO jobs(state, task, args, created_at) VALUES (0, 'noop', ?, ?)"


def insert(path: str, n: int, sync: str) -> float:
    """One autocommit INSERT per job (one transaction each)."""
    c = connect(path, sync)
    start = time.perf_counter()
    for i in range(n):
        c.execute(INSERT, (b"[%d]" % i, time.time()))
    took = time.perf_counter() - start
    c.close()
    return n / took


def bulk(path: str, n: int) -> float:
    """executemany, ``CHUNK`` jobs per transaction, synchronous FULL."""
    c = connect(path, "FULL")
    start = time.perf_counter()
    for lo in range(0, n, CHUNK):
        with c:
            c.executemany(INSERT, [(b"[%d]" % i, time.time())
                                   for i in range(lo, min(n, lo + CHUNK))])
    took = time.perf_counter() - start
    c.close()
    return n / took


def claim(path: str, n: int, batch: int) -> float:
    """Claim + complete loop, one process, synchronous NORMAL: ``batch`` jobs per claim
    transaction and per completion transaction."""
    c = connect(path, "NORMAL")
    with c:
        c.executemany(INSERT, [(b"[%d]" % i, time.time()) for i in range(n)])
    take = ("UPDATE jobs SET state = 1, started_at = ? WHERE id IN "
            "(SELECT id FROM jobs WHERE state = 0 ORDER BY id LIMIT ?) RETURNING id")
    done = "UPDATE jobs SET state = 2, finished_at = ? WHERE id = ?"
    start = time.perf_counter()
    total = 0
    while total < n:
        c.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in c.execute(take, (time.time(), batch))]
        c.execute("COMMIT")
        if not ids:
            break
        now = time.time()
        with c:
            c.executemany(done, [(now, i) for i in ids])
        total += len(ids)
    took = time.perf_counter() - start
    c.close()
    return total / took
