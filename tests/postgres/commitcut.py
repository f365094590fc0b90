"""A TCP proxy between a supervisor and the test server that loses one claim's answer.

Armed, it lets a connection's claim (the statement that moves jobs to running) reach the
server, and when the server answers the commit of the claim that took jobs (ReadyForQuery
"idle": the answer to the transaction's ``COMMIT``, a simple query psycopg sends at the end
of ``conn.transaction()``, or to an autocommit claim statement), it closes both sockets
instead of relaying that answer: the server has committed, the client only sees its
connection drop. Once only. It speaks just enough of the wire protocol (v3) to find message
boundaries; the client must not ask for TLS or GSS encryption (``sslmode=disable``).
``mark`` picks another statement instead of the claim (an enqueue's ``INSERT INTO jobs``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["CommitCutter"]

#: In the claim statements of both paths (the transaction's and ``claim_alone``).
CLAIM_MARK = b"attempt = attempt + 1"
#: Requests sent before the startup message, without a type byte (SSLRequest, GSSENCRequest).
_PRE_STARTUP = {80877103, 80877104}


class _Link:
    """One client connection and its server connection."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.names: dict[bytes, bytes] = {}  # prepared statement -> its text
        self.expect_claim = False  # the next CommandComplete is the claim's
        self.took = False  # a row of the claim's answer names a job (``claim_alone``'s)
        self.claimed = False  # a claim took jobs, its commit not yet answered
        self.commit_sent = False  # the client sent COMMIT since the claim
        self.held: list[bytes] = []  # server messages held back while a claim is open

    def close(self) -> None:
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class CommitCutter:
    """``CommitCutter(host, port)``: listens on 127.0.0.1 (``port`` attribute); ``arm()``;
    ``cut`` is set once a claim's commit answer was dropped; ``how`` says whether it was the
    answer to a ``COMMIT`` ("COMMIT") or to an autocommit statement ("statement")."""

    def __init__(self, host: str, port: int, mark: bytes = CLAIM_MARK) -> None:
        self.upstream = (host, port)
        self.mark = mark
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cut = threading.Event()
        self.how = ""
        self.links: list[_Link] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        """Cut the next marked statement's commit answer (again, after a cut)."""
        self.cut.clear()
        self.armed.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        for link in list(self.links):
            link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            link = _Link(client, server)
            self.links.append(link)
            threading.Thread(target=self._upstream, args=(link,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(link,), daemon=True).start()

    # --- client -> server ------------------------------------------------------------------------

    def _upstream(self, link: _Link) -> None:
        buf = b""
        started = False
        try:
            while True:
                data = link.client.recv(65536)
                if not data:
                    break
                buf += data
                out = b""
                while True:
                    if not started:
                        if len(buf) < 8:
                            break
                        (n,) = struct.unpack("!I", buf[:4])
                        if len(buf) < n:
                            break
                        msg, buf = buf[:n], buf[n:]
                        (code,) = struct.unpack("!I", msg[4:8])
                        started = code not in _PRE_STARTUP
                        out += msg
                        continue
                    if len(buf) < 5:
                        break
                    (n,) = struct.unpack("!I", buf[1:5])
                    if len(buf) < 1 + n:
                        break
                    msg, buf = buf[:1 + n], buf[1 + n:]
                    self._seen_from_client(link, msg[:1], msg[5:])
                    out += msg
                if out:
                    link.server.sendall(out)
        except OSError:
            pass
        link.close()

    def _seen_from_client(self, link: _Link, kind: bytes, body: bytes) -> None:
        with self._lock:
            if kind == b"P":  # Parse: name, text
                name, rest = body.split(b"\0", 1)
                text = rest.split(b"\0", 1)[0]
                link.names[name] = text
                if self.mark in text:
                    link.expect_claim = True
            elif kind == b"B":  # Bind: portal, statement
                statement = body.split(b"\0", 2)[1]
                if self.mark in link.names.get(statement, b""):
                    link.expect_claim = True
            elif kind == b"Q":
                text = body.rstrip(b"\0").strip().upper()
                if text.startswith(b"BEGIN"):
                    link.claimed = False
                elif text.startswith(b"COMMIT"):
                    link.commit_sent = True

    # --- server -> client ------------------------------------------------------------------------

    def _downstream(self, link: _Link) -> None:
        buf = b""
        try:
            while True:
                data = link.server.recv(65536)
                if not data:
                    break
                buf += data
                out = b""
                while len(buf) >= 5:
                    (n,) = struct.unpack("!I", buf[1:5])
                    if len(buf) < 1 + n:
                        break
                    msg, buf = buf[:1 + n], buf[1 + n:]
                    send, drop = self._seen_from_server(link, msg[:1], msg[5:], msg)
                    if drop:
                        link.close()  # the commit's answer never reaches the client
                        return
                    out += send
                if out:
                    link.client.sendall(out)
        except OSError:
            pass
        link.close()

    def _seen_from_server(self, link: _Link, kind: bytes, body: bytes,
                          msg: bytes) -> tuple[bytes, bool]:
        """What to relay now, and whether to cut the link instead."""
        with self._lock:
            if kind == b"D" and link.expect_claim and len(body) >= 6:
                # claim_alone's rows: (blocked, id, ...), one row of NULLs when it took none
                (first,) = struct.unpack("!i", body[2:6])
                at = 6 + max(first, 0)
                if len(body) >= at + 4 and struct.unpack("!i", body[at:at + 4])[0] >= 0:
                    link.took = True
            if kind == b"C" and link.expect_claim:
                link.expect_claim = False
                tag = body.rstrip(b"\0").split()
                took = (tag[:1] in ([b"UPDATE"], [b"INSERT"]) and int(tag[-1]) > 0) or link.took
                link.took = False
                if self.armed.is_set() and not self.cut.is_set() and took:
                    link.claimed, link.commit_sent = True, False
            if not link.claimed:
                return msg, False
            link.held.append(msg)
            if kind != b"Z":
                return b"", False
            if body[:1] == b"I":  # idle: committed, this is the commit's answer
                self.how = "COMMIT" if link.commit_sent else "statement"
                link.claimed = False
                self.armed.clear()
                self.cut.set()
                return b"", True
            held, link.held = link.held, []
            return b"".join(held), False
