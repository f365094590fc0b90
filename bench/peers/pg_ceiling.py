"""The PostgreSQL ceiling: what raw psycopg does on the same workloads, with no job system
around it, on the same server and settings as the systems in bench/postgres.py (the
counterpart of bench/peers/ceiling.py for SQLite). Each function takes the DSN of a fresh
database and returns jobs per second; one process, one connection, over TCP."""

from __future__ import annotations

import time

import psycopg

CHUNK = 1000

TABLE = ("CREATE TABLE IF NOT EXISTS jobs (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
         " state INTEGER NOT NULL, task TEXT NOT NULL, args BYTEA, created_at DOUBLE PRECISION,"
         " started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION)")
INDEX = "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id)"
INSERT = "INSERT INTO jobs(state, task, args, created_at) VALUES (0, 'noop', %s, %s)"
TAKE = ("UPDATE jobs SET state = 1, started_at = %s WHERE id IN (SELECT id FROM jobs "
        "WHERE state = 0 ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id")
DONE = "UPDATE jobs SET state = 2, finished_at = %s WHERE id = %s"


def connect(dsn: str, autocommit: bool) -> psycopg.Connection:
    c = psycopg.connect(dsn, autocommit=True)
    c.execute(TABLE)
    c.execute(INDEX)
    c.autocommit = autocommit
    return c


def insert(dsn: str, n: int) -> float:
    """One autocommit INSERT per job (one transaction, one WAL flush each)."""
    with connect(dsn, True) as c:
        start = time.perf_counter()
        for i in range(n):
            c.execute(INSERT, (b"[%d]" % i, time.time()))
        return n / (time.perf_counter() - start)


def bulk(dsn: str, n: int) -> float:
    """executemany (psycopg pipelines it), ``CHUNK`` jobs per transaction."""
    with connect(dsn, False) as c:
        start = time.perf_counter()
        for lo in range(0, n, CHUNK):
            with c.cursor() as cur:
                cur.executemany(INSERT, [(b"[%d]" % i, time.time())
                                         for i in range(lo, min(n, lo + CHUNK))])
            c.commit()
        return n / (time.perf_counter() - start)


def claim(dsn: str, n: int, batch: int) -> float:
    """Claim + complete loop: ``batch`` jobs per claim transaction (one ``FOR UPDATE SKIP
    LOCKED`` statement) and per completion transaction."""
    with connect(dsn, False) as c:
        with c.cursor() as cur:
            cur.executemany(INSERT, [(b"[%d]" % i, time.time()) for i in range(n)])
        c.commit()
        start, total = time.perf_counter(), 0
        while total < n:
            ids = [r[0] for r in c.execute(TAKE, (time.time(), batch)).fetchall()]
            c.commit()
            if not ids:
                break
            now = time.time()
            with c.cursor() as cur:
                cur.executemany(DONE, [(now, i) for i in ids])
            c.commit()
            total += len(ids)
        return total / (time.perf_counter() - start)
