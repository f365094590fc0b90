"""The PostgreSQL store's doorbell (the role of ``litejobs.bell`` for a SQLite file):
``LISTEN``/``NOTIFY`` on a channel of the store's schema, so an idle supervisor on any host
wakes the moment a job is enqueued.

A ring is the same one byte as the SQLite bell's (``q`` claim, ``e`` look again, ``c`` a job
was cancelled), sent with ``pg_notify`` inside the writer's transaction (``PgTx.ring``):
the server delivers it at commit, and never for a transaction rolled back. As with the SQLite
bell, a ring is only a hint: one missed costs a poll, never a job.

``PgBellListener`` holds a connection of its own (autocommit, outside the pool) whose socket
a supervisor's loop selects on (``fileno``), and ``drain`` reads what came. A listener whose
connection was lost reconnects at the next ``drain``, which then answers ``e``: rings may have
been missed meanwhile, so everything is looked at again.

Not wired into the supervisor yet (next increment).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from litejobs.errors import StorageError
from litejobs.store.postgres.connections import driver, redacted

if TYPE_CHECKING:
    import psycopg

__all__ = ["CHANNEL", "RING", "PgBellListener"]

#: The channel of the store in the connection's current schema (quoted when listened to).
CHANNEL = "'litejobs.' || current_schema()"
RING = f"SELECT pg_notify({CHANNEL}, %s)"


class PgBellListener:
    """Listens to the rings of the store at ``url`` (its schema's channel)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = redacted(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = 0
        self._connect()

    def _connect(self) -> None:
        psycopg, _ = driver()
        from psycopg import sql

        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            row = conn.execute(f"SELECT {CHANNEL}").fetchone()
            assert row is not None
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(row[0])))
        except psycopg.Error as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"cannot listen for rings on PostgreSQL at {self.path} "
                               f"({text}); check that the server is up") from None
        self._conn, self._pid = conn, os.getpid()

    def fileno(self) -> int:
        """The socket to select on: readable when a ring (or a lost connection) came."""
        assert self._conn is not None
        return self._conn.fileno()

    def drain(self) -> bytes:
        """The rings that came since the last drain, without waiting (``e`` after a lost
        connection, once it is back)."""
        psycopg, _ = driver()
        conn = self._conn
        if conn is not None and self._pid == os.getpid() and not conn.closed:
            try:
                return "".join(n.payload for n in conn.notifies(timeout=0)).encode()
            except psycopg.OperationalError:
                pass
        self._connect()  # lost, or inherited across a fork: a connection of its own
        return b"e"

    def close(self) -> None:
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            conn.close()
        self._conn = None
