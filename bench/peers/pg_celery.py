"""Celery for bench/postgres.py, with its broker AND its result backend on PostgreSQL:

- broker: kombu's SQLAlchemy transport, ``sqla+postgresql+psycopg://`` (SQLAlchemy 2 with
  psycopg 3; tables kombu_queue and kombu_message). It is a polling transport: an idle worker
  looks for messages every ``polling_interval`` seconds: kombu's default (1.0 s), or
  $CELERY_PG_POLL (``bench/postgres.py --celery-poll S``, set on kombu's Transport class: the
  transport options of kombu 5.7's sqla transport all go to create_engine); a
  message is taken with ``SELECT ... FOR UPDATE`` (no SKIP LOCKED) and marked invisible.
- result backend: Celery's database backend, ``db+postgresql+psycopg://`` (table
  celery_taskmeta): every task's result row is written (results not ignored).

Workers: 2 workers = one ``celery worker -P prefork -c 2``; 8 workers = two ``celery worker``
processes with ``-c 4`` (gossip, mingle and heartbeat off, default prefetch)."""

from __future__ import annotations

import os
import shutil
import sys

import celery
import kombu
import sqlalchemy
from common import mark

NAME = "Celery"
VERSION = (f"{celery.__version__} (kombu {kombu.__version__}, SQLAlchemy "
           f"{sqlalchemy.__version__})")
WORKERS = ("`celery -A pg_celery worker -P prefork -c C --without-gossip --without-mingle "
           "--without-heartbeat`: 2 workers = 1 process × C=2; 8 workers = 2 × C=4; broker "
           "`sqla+postgresql+psycopg://` (kombu's polling SQLAlchemy transport, "
           f"polling_interval {os.environ.get('CELERY_PG_POLL') or '1.0 (the default)'} s), "
           "result backend `db+postgresql+psycopg://` (results kept)")


def urls(dsn: str) -> tuple[str, str]:
    """The broker and result backend URLs for a ``postgresql://`` DSN."""
    rest = dsn.split("://", 1)[1]
    return f"sqla+postgresql+psycopg://{rest}", f"db+postgresql+psycopg://{rest}"


def make(dsn: str):
    broker, backend = urls(dsn)
    a = celery.Celery("pg_celery", broker=broker, backend=backend, set_as_current=False)
    a.conf.update(task_ignore_result=False, broker_connection_retry_on_startup=True,
                  worker_hijack_root_logger=False)
    if poll := os.environ.get("CELERY_PG_POLL"):
        # not through broker_transport_options: kombu 5.7's sqla transport hands every
        # transport option to SQLAlchemy's create_engine, which refuses polling_interval
        from kombu.transport import sqlalchemy as sqla
        sqla.Transport.polling_interval = float(poll)

    @a.task(name="bench.noop")
    def noop(i=0):
        mark(i)
        return i

    return a, noop


# `celery -A pg_celery` in the workers; the harness sets CELERY_PG before importing it there
app, _ = make(os.environ.get("CELERY_PG", "postgresql://postgres@127.0.0.1/celery"))


def producer():
    """The enqueue call of a producer process, on the workers' database."""
    _, noop = make(os.environ["CELERY_PG"])
    return noop.delay


class Peer:
    made = 0

    def __init__(self, ctx, tag: str, workers: int = 2) -> None:
        # a new database name each time: kombu caches its engine, and so whether it created
        # its tables, by URL for the life of the process
        Peer.made += 1
        self.dsn = ctx.fresh_pg(f"celery_{Peer.made}")
        self.app, self.noop = make(self.dsn)
        self.per = 2 if workers <= 2 else workers // 2
        self.processes = 1 if workers <= 2 else 2
        # kombu and the result backend create their tables on first use: here, untimed,
        # like the others' schema
        with self.app.connection_for_write() as conn:
            conn.default_channel.session  # noqa: B018 - opens the engine: create_all
        self.app.backend.ResultSession().close()

    def enqueue(self, i: int) -> None:
        self.noop.delay(i)

    def worker_env(self) -> dict[str, str]:
        return {"CELERY_PG": self.dsn}

    def worker_cmds(self) -> list[list[str]]:
        exe = shutil.which("celery", path=os.path.dirname(sys.executable))
        return [[exe, "-A", "pg_celery", "worker", "-P", "prefork", "-c", str(self.per),
                 "-n", f"w{k}@%h", "-l", "WARNING", "--without-gossip", "--without-mingle",
                 "--without-heartbeat"] for k in range(self.processes)]

    def close(self) -> None:
        self.app.close()
