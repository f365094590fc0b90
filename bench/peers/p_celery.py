"""Celery 5 + Redis broker, no result backend; workers = one ``celery worker`` with the prefork
pool and concurrency 2 (gossip, mingle and heartbeat off)."""

from __future__ import annotations

import os
import shutil
import sys

import celery
from common import mark

NAME = "Celery"
WORKERS = ("`celery -A p_celery worker -P prefork -c 2 --without-gossip --without-mingle "
           "--without-heartbeat` (no result backend, default prefetch)")
VERSION = celery.__version__

def make(url: str):
    a = celery.Celery("p_celery", broker=url, set_as_current=False)
    a.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                  worker_hijack_root_logger=False)

    @a.task(name="bench.noop")
    def noop(i=0):
        mark(i)

    return a, noop


app, _ = make(os.environ.get("CELERY_BROKER", "redis://127.0.0.1/0"))


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py), on the workers' broker."""
    _, noop = make(os.environ["CELERY_BROKER"])
    return noop.delay



class Peer:
    def __init__(self, ctx, tag: str) -> None:
        ctx.flush_redis()
        self.url = ctx.redis_url
        self.app, self.noop = make(self.url)

    def enqueue(self, i: int) -> None:
        self.noop.delay(i)

    def worker_env(self) -> dict[str, str]:
        return {"CELERY_BROKER": self.url}

    def worker_cmds(self) -> list[list[str]]:
        exe = shutil.which("celery", path=os.path.dirname(sys.executable))
        return [[exe, "-A", "p_celery", "worker", "-P", "prefork", "-c", "2", "-l", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"]]

    def close(self) -> None:
        self.app.close()
