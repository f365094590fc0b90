"""DBOS Transact queues on a SQLite system database. The harness enqueues with ``DBOSClient``;
workers = 2 processes that each run ``DBOS.launch()`` (this file as a script) with the queue's
default polling interval (1 s) and no per-worker concurrency limit
(workflows run on DBOS's thread pool)."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from importlib.metadata import version

from common import mark

NAME = "DBOS"
WORKERS = ("2 × `python p_dbos.py worker` (each `DBOS.launch()`, "
           "`DBOS.register_queue('bench')`: defaults, i.e. 1 s queue polling, no "
           "worker_concurrency limit); enqueue via `DBOSClient`")
VERSION = version("dbos")


def launch(path: str):
    from dbos import DBOS
    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{path}",
                 "executor_id": f"w{os.getpid()}", "log_level": "WARNING"})
    @DBOS.workflow(name="noop")
    def noop(i=0):
        mark(i)

    DBOS.launch()
    DBOS.register_queue("bench")
    return DBOS


def producer():
    """The enqueue call of a producer process (bench/peers/producer.py): a ``DBOSClient`` on the
    workers' system database, as the harness uses (destroyed when the process exits)."""
    from dbos import DBOSClient
    client = DBOSClient(system_database_url=f"sqlite:///{os.environ['DBOS_DB']}")
    atexit.register(client.destroy)
    return lambda i: client.enqueue({"queue_name": "bench", "workflow_name": "noop"}, i)


class Peer:
    enqueue_bulk = None

    def __init__(self, ctx, tag: str) -> None:
        import subprocess

        from dbos import DBOSClient
        self.path = ctx.db(f"dbos-{tag}.db")
        # the client never creates the schema: a DBOS app launched once does
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "migrate", self.path],
                           check=False, capture_output=True, timeout=120, text=True,
                           env=dict(os.environ, PYTHONPATH=os.path.dirname(__file__)))
        if r.returncode:
            raise RuntimeError("DBOS.launch() failed: " + r.stderr.strip()[-400:])
        self.client = DBOSClient(system_database_url=f"sqlite:///{self.path}")

    def enqueue(self, i: int) -> None:
        self.client.enqueue({"queue_name": "bench", "workflow_name": "noop"}, i)

    def worker_env(self) -> dict[str, str]:
        return {"DBOS_DB": self.path}

    def worker_cmds(self) -> list[list[str]]:
        cmd = [sys.executable, os.path.abspath(__file__), "worker", self.path]
        return [cmd, cmd]

    def close(self) -> None:
        self.client.destroy()


if __name__ == "__main__":
    dbos = launch(sys.argv[2])
    if sys.argv[1] == "worker":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    dbos.destroy()
