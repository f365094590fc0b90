# examples/fastapi/test_web.py: run with `pytest test_web.py` in examples/fastapi
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from tasks import create_tasks
from web import create_app

from litejobs.signing import signature_header
from litejobs.testing import Clock, assert_enqueued, inline, refute_enqueued, run_until_idle


@pytest.fixture
def tasks(tmp_path):
    return create_tasks(tmp_path / "jobs.db")  # a fresh database (and data folder) per test


@pytest.fixture
def client(tasks):
    return TestClient(create_app(tasks, webhook_secret="test-secret"))


def test_an_upload_is_processed_and_its_page_shows_the_result(client, tasks, monkeypatch):
    monkeypatch.setattr("tasks.STEP_PAUSE", 0)
    answer = client.post("/uploads?name=q.txt", content=b"to be\nor not to be\n")
    assert answer.status_code == 202
    job_id = answer.json()["job"]
    assert_enqueued(tasks.process_file, count=1)
    assert run_until_idle(tasks.app).succeeded == 1
    status = client.get(f"/uploads/{job_id}.json").json()
    assert status["progress"] == 1.0 and status["result"]["words"] == 6
    assert "2 lines, 6 words" in client.get(f"/uploads/{job_id}").text


def test_a_newsletter_is_one_job_per_recipient(client, tasks):
    answer = client.post("/newsletter", json={"subject": "Sale", "body": "50% off",
                                              "recipients": ["a@example.com", "b@example.com"]})
    assert answer.status_code == 202
    assert_enqueued(tasks.send_email, args=["a@example.com", "Sale", "50% off"])
    assert_enqueued(tasks.send_email, count=2)
    assert run_until_idle(tasks.app, queues=["mail"]).succeeded == 2
    assert len(list((tasks.data / "outbox").iterdir())) == 2


def test_inline_sends_the_email_during_the_request(client, tasks):
    with inline(tasks.app):  # each job runs as it is enqueued
        client.post("/newsletter", json={"subject": "Hi", "recipients": ["c@example.com"]})
    [sent] = (tasks.data / "outbox").iterdir()
    assert "To: c@example.com" in sent.read_text()


def test_a_signed_webhook_is_accepted_once_and_handled_later(client, tasks):
    body = b'{"id": "evt_1", "order": 42, "amount": 1999}'
    headers = {"Litejobs-Signature": signature_header("test-secret", body)}
    first = client.post("/webhooks/payments", content=body, headers=headers)
    again = client.post("/webhooks/payments", content=body, headers=headers)  # redelivered
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()  # the same job
    forged = client.post("/webhooks/payments", content=body,
                         headers={"Litejobs-Signature": "t=1,v1=00"})
    assert forged.status_code == 401
    assert run_until_idle(tasks.app).succeeded == 1
    assert [p["order"] for p in client.get("/payments").json()] == [42]


def test_the_daily_report_fires_at_seven(client, tasks):
    clock = Clock(datetime(2030, 1, 1, 6, 59, tzinfo=UTC))
    run_until_idle(tasks.app, clock=clock, queues=["default"])  # the cron entries start here
    clock.advance(60)
    assert run_until_idle(tasks.app, clock=clock, queues=["default"]).succeeded == 1
    refute_enqueued(tasks.daily_report)
    assert client.get("/reports").json()[0]["date"] == "2030-01-01"
