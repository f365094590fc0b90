"""litejobs for bench/postgres.py: on PostgreSQL (``litejobs.App("postgresql://...")``, the
contract of API.md "Scale-out on PostgreSQL") or, as the reference line, on a SQLite file
(durability "full"). Workers: one ``litejobs run --database DB --app pg_litejobs:app
--workers K`` per supervisor; 2 workers = 1 supervisor × 2, 8 workers = 2 supervisors × 4."""

from __future__ import annotations

import os
import sys

from common import mark

import litejobs

NAME = "litejobs"
VERSION = litejobs.__version__
WORKERS = ("`litejobs run --database DB --app pg_litejobs:app --workers K --grace 5`: "
           "2 workers = 1 supervisor × 2; 8 workers = 2 supervisors × 4")


def is_url(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


def make(database: str):
    # durability is the SQLite store's knob; a PostgreSQL server has its own (fsync,
    # synchronous_commit), reported by the harness
    app = (litejobs.App(database) if is_url(database)
           else litejobs.App(database, durability="full"))

    @app.task(name="bench.noop", retries=0)
    def noop(i: int = 0) -> None:
        mark(i)

    return app, noop


def __getattr__(name: str):  # `litejobs run --app pg_litejobs:app` in the supervisors
    if name == "app":
        app, _ = make(os.environ["LJ_DATABASE"])
        globals()["app"] = app
        return app
    raise AttributeError(name)


def producer():
    """The enqueue call of a producer process, on the workers' database."""
    _, task = make(os.environ["LJ_DATABASE"])
    return task.enqueue


class Peer:
    made = 0

    def __init__(self, ctx, tag: str, store: str = "postgres", workers: int = 2) -> None:
        if store == "postgres":
            Peer.made += 1  # a new database each time: nothing cached by URL carries over
            self.database = ctx.fresh_pg(f"litejobs_{Peer.made}")
        else:
            self.database = ctx.db(f"litejobs-{tag}.db")
        self.supervisors = 1 if workers <= 2 else 2
        self.per = workers // self.supervisors
        self.app, self.task = make(self.database)
        self.app.stats()  # the store (pool, schema) is open before any timing

    def enqueue(self, i: int) -> None:
        self.task.enqueue(i)

    def enqueue_bulk(self, ids: list[int]) -> None:
        self.app.enqueue_many([self.task.prepare(i) for i in ids])

    def worker_env(self) -> dict[str, str]:
        return {"LJ_DATABASE": self.database}

    def worker_cmds(self) -> list[list[str]]:
        cmd = [sys.executable, "-m", "litejobs", "run", "--database", self.database,
               "--app", "pg_litejobs:app", "--workers", str(self.per), "--grace", "5"]
        return [cmd] * self.supervisors

    def close(self) -> None:
        self.app.store.close()
