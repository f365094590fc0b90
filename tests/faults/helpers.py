"""Helpers the fault scenarios share: SQL through apsw, integrity, real CLI runs, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw

from tests.conftest import clean_env

__all__ = ["integrity", "litejobs_cli", "one_line_refusal", "sql"]


def sql(db: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection. Through apsw, the SQLite litejobs links:
    Python's sqlite3 is a second copy of SQLite, and two copies in one process drop each
    other's POSIX locks when either closes the file (sqlite.org/howtocorrupt.html 2.2.1) —
    a test that peeked with sqlite3 made the litejobs connection beside it write into a WAL
    another process had meanwhile deleted."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READWRITE)
    conn.set_busy_timeout(30_000)
    try:
        return [tuple(r) for r in conn.execute(statement, params)]
    finally:
        conn.close()


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a database."""
    return "; ".join(str(r[0]) for r in sql(path, "PRAGMA integrity_check"))


def litejobs_cli(*args: Any, db: Path, cwd: Path,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A real ``litejobs`` process, with the test database in LITEJOBS_TEST_DB."""
    return subprocess.run([sys.executable, "-m", "litejobs", *map(str, args)], cwd=cwd,
                          env=clean_env(db), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def one_line_refusal(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A non-zero exit with exactly one line on stderr, no traceback, naming ``fragments``."""
    text = proc.stderr.strip()
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text
