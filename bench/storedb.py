"""Where a benchmark's databases live: fresh SQLite files in a directory, or fresh schemas of
one PostgreSQL server (``--database postgresql://...``), and a read-only look at them."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from typing import Any

__all__ = ["Databases", "Reader", "is_postgres"]


def is_postgres(where: str | None) -> bool:
    return bool(where) and str(where).startswith(("postgresql://", "postgres://"))


class Databases:
    """Fresh databases for the setups: SQLite files in a directory, or schemas of one
    PostgreSQL server (each dropped when the run ends)."""

    def __init__(self, where: str | None) -> None:
        self.where, self.schemas = where, list[str]()
        self.tmp = None if where and is_postgres(where) else \
            tempfile.TemporaryDirectory(prefix="litejobs-bench-", dir=where)

    def fresh(self, name: str) -> str:
        if self.tmp is not None:
            return os.path.join(self.tmp.name, name)
        import psycopg
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        assert self.where is not None
        with psycopg.connect(self.where, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        sep = "&" if "?" in self.where else "?"
        return f"{self.where}{sep}options=-csearch_path%3D{schema}"

    def close(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
            return
        import psycopg
        assert self.where is not None
        with psycopg.connect(self.where, autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


class Reader:
    """A read-only look at the bench's database, SQLite or PostgreSQL (``?`` placeholders)."""

    def __init__(self, db: str) -> None:
        self.pg = is_postgres(db)
        if self.pg:
            import psycopg
            self.conn: Any = psycopg.connect(db, autocommit=True)
        else:
            self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s") if self.pg else sql, params)

    def close(self) -> None:
        self.conn.close()
