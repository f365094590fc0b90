"""How fast ``litejobs migrate-store`` copies a SQLite file to PostgreSQL (issue 16 item 5).

    python bench/migrate_store.py URL [--jobs N] [--keep DIR]

URL: a PostgreSQL database to write into (a fresh schema is made in it and dropped after),
e.g. the test cluster of ``.ci/postgres start``. Builds a file of N jobs (default 1,000,000;
a tenth of them succeeded with an attempt row each, a tenth tagged), times the move (one
transaction: COPY of every table, the sequences, the counts and checksum read back), and
prints rows/s. The file is built once per N in DIR (default: a temp dir).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import litejobs
from litejobs.storemove import migrate_store


def build(db: Path, n: int) -> None:
    app = litejobs.App(db)
    add = app.task(name="bench.add")(lambda a, b: a + b)
    tagged = add.options(tags=["bench", "tenth"])
    chunk = 10_000
    for start in range(0, n, chunk):
        app.enqueue_many((tagged if i % 10 == 0 else add).prepare(i, i)
                         for i in range(start, min(n, start + chunk)))
    # A tenth succeeded with an attempt row each, written straight (no workers needed).
    conn = apsw.Connection(str(db))
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE jobs SET state = 'running', attempt = 1, leased_by = 'b', "
                 "lease_until = 1e10, started_at = created_at WHERE id % 10 = 1")
    conn.execute("UPDATE jobs SET state = 'succeeded', finished_at = started_at + 0.01, "
                 "result = '2', leased_by = NULL, lease_until = NULL WHERE id % 10 = 1")
    conn.execute("INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, "
                 "finished_at) SELECT id, 1, 'failed', 'b', created_at, created_at + 0.01 "
                 "FROM jobs WHERE id % 10 = 1")
    conn.execute("COMMIT")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    import psycopg

    where = args.keep or Path(tempfile.mkdtemp())
    where.mkdir(parents=True, exist_ok=True)
    db = where / f"move-{args.jobs}.db"
    if not db.exists():
        t0 = time.monotonic()
        build(db, args.jobs)
        print(f"built {db} ({args.jobs:,} jobs) in {time.monotonic() - t0:.1f} s",
              file=sys.stderr)
    schema = f"bench_move_{os.getpid()}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{args.url}{'&' if '?' in args.url else '?'}options=-csearch_path%3D{schema}"
    try:
        report = migrate_store(str(db), url, progress=lambda p: print(
            f"  {p.done:,} of {p.total:,} rows, {p.rate:,.0f} rows/s", file=sys.stderr))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(f"{args.jobs:,} jobs, {report.rows:,} rows in all, moved in {report.seconds:.1f} s: "
          f"{report.rows / report.seconds:,.0f} rows/s, "
          f"{report.copied['jobs'] / report.seconds:,.0f} jobs/s")


if __name__ == "__main__":
    main()
