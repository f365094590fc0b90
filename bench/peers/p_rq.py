"""RQ 2 + Redis: workers = 2 ``rq worker`` processes (the default Worker forks a child per job;
the SimpleWorker variant runs jobs in the worker process itself)."""

from __future__ import annotations

import os
import shutil
import sys

import redis
import rq
from common import mark

NAME = "RQ"
WORKERS = "2 × `rq worker bench` (default fork-per-job Worker, or `-w rq.worker.SimpleWorker`)"
VERSION = rq.__version__


def noop(i=0):
    mark(i)


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py), on the workers' Redis."""
    q = rq.Queue("bench", connection=redis.Redis.from_url(os.environ["RQ_URL"]))
    return lambda i: q.enqueue(noop, i)


class Peer:
    def __init__(self, ctx, tag: str, worker: str = "fork") -> None:
        ctx.flush_redis()
        self.url = ctx.redis_url
        self.worker = worker
        self.conn = redis.Redis.from_url(self.url)
        self.q = rq.Queue("bench", connection=self.conn)

    def enqueue(self, i: int) -> None:
        self.q.enqueue(noop, i)

    def enqueue_bulk(self, ids: list[int]) -> None:
        self.q.enqueue_many([rq.Queue.prepare_data(noop, (i,)) for i in ids])

    def worker_env(self) -> dict[str, str]:
        return {"RQ_URL": self.url}  # the workers get it as --url; producers read it here

    def worker_cmds(self) -> list[list[str]]:
        exe = shutil.which("rq", path=os.path.dirname(sys.executable))
        cmd = [exe, "worker", "bench", "--url", self.url, "-q"]
        if self.worker == "simple":
            cmd += ["-w", "rq.worker.SimpleWorker"]
        return [cmd, cmd]

    def close(self) -> None:
        self.conn.close()
