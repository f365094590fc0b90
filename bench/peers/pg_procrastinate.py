"""Procrastinate for bench/postgres.py: bench/peers/p_procrastinate.py's app and task, with
the number of workers varied. 2 workers = 2 ``procrastinate worker --concurrency 1``
processes (as in bench/peers.py); 8 workers = 2 processes with ``--concurrency 4`` (a sync
task runs in a thread of the worker's pool). Jobs arrive by LISTEN/NOTIFY."""

from __future__ import annotations

import p_procrastinate
from p_procrastinate import VERSION, make, producer

__all__ = ["NAME", "VERSION", "WORKERS", "Peer", "make", "producer"]

NAME = "Procrastinate"
WORKERS = ("`procrastinate --app p_procrastinate.app worker --queues bench --concurrency C`: "
           "2 workers = 2 processes × C=1; 8 workers = 2 processes × C=4 (sync task, "
           "LISTEN/NOTIFY on)")


class Peer(p_procrastinate.Peer):
    def __init__(self, ctx, tag: str, workers: int = 2) -> None:
        super().__init__(ctx, tag)
        self.concurrency = max(1, workers // 2)

    def worker_cmds(self) -> list[list[str]]:
        cmd = super().worker_cmds()[0]
        at = cmd.index("--concurrency") + 1
        cmd = [*cmd[:at], str(self.concurrency), *cmd[at + 1:]]
        return [cmd, list(cmd)]
