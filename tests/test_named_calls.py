"""Calls made by task name (the HTTP API, cron entries, `litejobs check`) are checked against
a registered task's signature like `task.enqueue(...)`, through calls.named_call."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import litejobs
from litejobs.cron import entry_from_spec
from litejobs.ticker import entry_job
from litejobs.web.api import new_job
from litejobs.web.apibody import ApiError


@pytest.fixture
def app(tmp_path: Path) -> litejobs.App:
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task(name="n.add")
    def add(a: int, b: int) -> int:
        return a + b

    return app


def test_a_post_whose_arguments_the_task_cannot_take_is_refused(app: litejobs.App) -> None:
    assert new_job(app, {"task": "n.add", "args": [1, 2]}, None).args == "[1,2]"
    with pytest.raises(ApiError) as refused:
        new_job(app, {"task": "n.add", "args": [1, 2, 3]}, None)
    assert refused.value.status == 400
    assert "n.add" in str(refused.value) and "nothing was enqueued" in str(refused.value)


def test_a_cron_entry_whose_arguments_the_task_cannot_take_is_refused(
        app: litejobs.App) -> None:
    now = time.time()
    good = entry_from_spec("ok", "* * * * *", "n.add", "UTC", (1, 2), {}, {}, "@app.cron")
    assert entry_job(app, good, now, now).args == "[1,2]"
    bad = entry_from_spec("bad", "* * * * *", "n.add", "UTC", (1,), {"c": 3}, {}, "@app.cron")
    with pytest.raises(TypeError, match=r"n\.add"):
        entry_job(app, bad, now, now)
