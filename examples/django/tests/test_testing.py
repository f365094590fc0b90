"""Testing a Django app's tasks without a supervisor: litejobs.testing on the backend's App,
a fresh database per test (the pattern of docs/testing.md, "Django")."""

import json

import pytest
from django.tasks import task_backends
from shop.models import WebhookEvent

from litejobs.testing import Clock, assert_enqueued, refute_enqueued, run_until_idle


@pytest.fixture
def jobs(settings, tmp_path):
    settings.TASKS = {**settings.TASKS,
                      "default": {**settings.TASKS["default"],
                                  "OPTIONS": {"database": tmp_path / "jobs.db"}}}
    return task_backends["default"].app  # the backend's litejobs.App


@pytest.mark.django_db
def test_newsletter_sends_one_mail_a_reader(client, jobs, settings) -> None:
    clock = Clock().attach(jobs)
    client.post("/newsletters/", json.dumps({"recipients": ["ada@example.com"],
                                             "subject": "News", "text": "Hello"}),
                content_type="application/json")
    assert_enqueued("shop.tasks.send_email", args=["ada@example.com", "News", "Hello"],
                    app=jobs)
    assert run_until_idle(jobs, clock=clock).succeeded == 1
    refute_enqueued("shop.tasks.send_email", app=jobs)


@pytest.mark.django_db
def test_webhook_is_enqueued_at_commit(client, jobs, django_capture_on_commit_callbacks):
    # A TestCase-style test is one transaction that never commits: run the on_commit
    # callbacks (the enqueue) by hand.
    with django_capture_on_commit_callbacks(execute=True):
        reply = client.post("/webhooks/", json.dumps({"type": "refund"}),
                            content_type="application/json")
    assert_enqueued("shop.tasks.handle_webhook", args=[reply.json()["event"]], app=jobs)
    # run in this process and in the test's transaction: the job sees the event row
    assert run_until_idle(jobs).succeeded == 1
    assert WebhookEvent.objects.get().handled_at is not None
