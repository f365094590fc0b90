"""The dashboard on PostgreSQL measures stored times on the server's clock: this process's
clock an hour off (``time.time`` patched; the store's ``clock_offset`` measures it against
the server's) changes no age, no "since" filter and no idempotent answer."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest

import litejobs
from tests.web.test_jobs_pages import Board, words

HOUR = 3600.0


@pytest.fixture(params=[-HOUR, HOUR], ids=["host-1h", "host+1h"])
def skew(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> float:
    """This process's clock ``skew`` seconds off the server's, from here on."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + request.param)
    return float(request.param)


def test_ages_and_since_filters_are_on_the_servers_clock(pg_url: str, skew: float) -> None:
    app = litejobs.App(pg_url)
    job = app.enqueue("c.noop", [1])
    # a supervisor's heartbeat, written as `litejobs run` does (on the server's clock)
    app.store.write(lambda tx: tx.heartbeat("sup-1", "host-a", os.getpid(), time.time() - 5,
                                            time.time(), "all"))
    board = Board(app)

    page = board.get("/supervisors")
    assert page.status_code == 200, page.text
    text = words(page.text)
    # seconds ago, not an hour ago or "in 59 min", and not shown late
    assert re.search(r"Heartbeat [\d.]+ s ago", text), text
    assert 'class="warn"' not in page.text

    listed = board.get("/jobs?since=30m")
    assert listed.status_code == 200, listed.text
    assert f"/jobs/{job.id}" in listed.text, words(listed.text)[:600]
    assert re.search(r"[\d.]+ s ago", words(listed.text)), words(listed.text)[:600]


def test_an_idempotent_publish_answers_201_then_200(pg_url: str, skew: float,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from litejobs.web import asgi

    app = litejobs.App(pg_url)
    if not hasattr(app, "deliver"):
        pytest.skip("this App has no deliver()")
    token = "skew-token-0123456789"
    monkeypatch.setenv("LITEJOBS_API_TOKEN", token)
    client = TestClient(asgi(app, api=True), headers={"Authorization": f"Bearer {token}"})
    body: dict[str, Any] = {"url": "http://127.0.0.1:9/hook", "delay": 3600}
    first = client.post("/api/v1/publish", json=body, headers={"Idempotency-Key": "p-1"})
    again = client.post("/api/v1/publish", json=body, headers={"Idempotency-Key": "p-1"})
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert first.json()["id"] == again.json()["id"]


def test_the_cron_pages_next_instants_are_on_the_servers_clock(pg_url: str,
                                                                skew: float) -> None:
    app = litejobs.App(pg_url)

    @app.task(name="c.tick")
    def tick() -> None:
        return None

    app.cron("* * * * *", name="every-minute")(tick)
    page = words(Board(app).get("/cron").text)
    # the next instant within the minute, not an hour ahead or behind (the patch skews
    # time.time only: a page reading datetime.now() would pass here on this host's clock)
    assert re.search(r"\(in [\d.]+ s\)", page), page
