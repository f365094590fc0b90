"""Test apps that `litejobs run` imports in the process-level tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def lazy_app(module: str, make_app: Callable[[str], Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that builds ``app`` on first use from LITEJOBS_TEST_DB, so the
    test process can import the module (and build its own App) without the variable."""
    built: list[Any] = []

    def __getattr__(name: str) -> Any:
        if name != "app":
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if not built:
            path = os.environ.get("LITEJOBS_TEST_DB")
            if not path:
                raise RuntimeError(f"{module}:app needs LITEJOBS_TEST_DB (the database path) "
                                   "in the environment")
            built.append(make_app(path))
        return built[0]

    return __getattr__


def append_record(path: str, record: dict[str, Any]) -> None:
    """One JSON line, written with a single O_APPEND write (atomic for short lines)."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
