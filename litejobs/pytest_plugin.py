"""The pytest plugin (entry point ``pytest11``: installed with litejobs, loaded by pytest).

Fixtures:

- ``litejobs_app``: a ``litejobs.App`` on a fresh database file in the test's ``tmp_path``.
  To test your own app's tasks, register them on it, or point your app at
  ``litejobs_app.path``.
- ``litejobs_clock``: a ``litejobs.testing.Clock`` attached to ``litejobs_app`` (its enqueues
  read it), standing still at the real time of the test's start until advanced.

pytest imports this module in every run of every project where litejobs is installed, so it
imports nothing at load time: litejobs (and SQLite) only when a test asks for a fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.testing import Clock

__all__ = ["litejobs_app", "litejobs_clock"]


@pytest.fixture
def litejobs_app(tmp_path: Path) -> App:
    """A litejobs App on a fresh database file (created on first use) in ``tmp_path``."""
    from litejobs.app import App

    return App(tmp_path / "litejobs.db")


@pytest.fixture
def litejobs_clock(litejobs_app: App) -> Clock:
    """A Clock standing still at the test's start, attached to ``litejobs_app``."""
    import time

    from litejobs.testing import Clock

    return Clock(time.time()).attach(litejobs_app)
