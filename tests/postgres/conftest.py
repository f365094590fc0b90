"""A real PostgreSQL for the PostgreSQL store's tests: the server named by
LITEJOBS_TEST_POSTGRES (``.ci/postgres start`` prints one), a fresh schema per test.

Under CI (env CI set) a missing server or driver fails these tests; elsewhere they skip,
saying why."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres.stores import open_store

PG_ENV = "LITEJOBS_TEST_POSTGRES"
_schemas = itertools.count(1)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The test server's URL (its database is shared: each test takes a schema of its own)."""
    url = os.environ.get(PG_ENV)
    if not url:
        _unavailable(f"{PG_ENV} is not set: run `.ci/postgres start` and export its URL as "
                     f"{PG_ENV}")
    assert url is not None
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed: pip install -e '.[dev]'")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL at {url} is not reachable: {str(exc).strip()}")
    return url


def in_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` as its connections' search_path."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections work in a fresh, empty schema (dropped afterwards)."""
    import psycopg

    schema = f"t_{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield in_schema(pg_server, schema)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store of each kind lives: a file path, or a URL with a fresh schema."""
    if request.param == "sqlite":
        return str(tmp_path / "jobs.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(where: str) -> Iterator[Any]:
    """A store of each kind (the conformance tests run once on each)."""
    s = open_store(where)
    yield s
    s.close()
