"""The example's use cases end to end: requests through Django's test client (and, once,
a real `runserver` under `manage.py litejobs run --`), jobs run by a real supervisor, their
effects read back from the database."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.tasks import TaskResultStatus, default_task_backend
from django.test import Client
from shop.models import Rate, Report, Upload, WebhookEvent
from shop.tasks import sync_rates

from litejobs.contrib.django import app_for
from tests.conftest import HERE, finished, manage, supervisor_log, wait_for

pytestmark = [pytest.mark.usefixtures("supervisor"), pytest.mark.django_db(transaction=True)]


def test_upload_is_processed_with_progress(client: Client) -> None:
    text = "\n".join(f"line {i} has five words" for i in range(200)).encode()
    from django.core.files.uploadedfile import SimpleUploadedFile

    reply = client.post("/uploads/", {"file": SimpleUploadedFile("notes.txt", text)})
    assert reply.status_code == 202
    job_id = reply.json()["job"]

    def done() -> dict | None:
        status = client.get(f"/jobs/{job_id}/").json()
        return status if status["status"] == "SUCCESSFUL" else None

    status = wait_for(done, 30, "the upload's job", supervisor_log)
    assert status["value"] == {"lines": 200, "words": 1000}
    upload = Upload.objects.get(pk=reply.json()["upload"])
    assert (upload.lines, upload.words, upload.job) == (200, 1000, job_id)
    # the last progress the task reported reached the database before its outcome
    assert status["progress"] == 1.0 and status["message"] == "line 200 of 200"
    assert client.get("/jobs/987654321/").status_code == 404


def test_newsletter_respects_the_rate_limit(client: Client) -> None:
    recipients = [f"reader{i}@example.com" for i in range(8)]
    reply = client.post("/newsletters/", json.dumps(
        {"recipients": recipients, "subject": "News", "text": "Hello"}),
        content_type="application/json")
    assert reply.status_code == 202
    results = [finished(default_task_backend.get_result(j)) for j in reply.json()["jobs"]]
    assert {r.status for r in results} == {TaskResultStatus.SUCCESSFUL}
    sent = "".join(p.read_text() for p in Path(settings.DATA_DIR, "sent-mail").iterdir())
    assert all(f"To: {to}" in sent for to in recipients)
    # "5/s" with concurrency_key="smtp": never more than 5 starts in any one second
    starts = sorted(r.started_at.timestamp() for r in results)
    for i, s in enumerate(starts):
        assert sum(1 for x in starts[i:] if x < s + 1.0) <= 5, starts


def test_webhook_is_handled_after_the_commit(client: Client) -> None:
    reply = client.post("/webhooks/", json.dumps({"type": "payment.succeeded", "id": 7}),
                        content_type="application/json")
    assert reply.status_code == 202
    event_id, job_id = reply.json()["event"], reply.json()["job"]
    assert job_id  # written when the view's transaction committed, before the reply
    result = finished(default_task_backend.get_result(job_id))
    assert result.return_value == "payment.succeeded"
    assert WebhookEvent.objects.get(pk=event_id).handled_at is not None


def test_daily_report_by_cron() -> None:
    listed = manage("litejobs", "cron", "list")
    assert "daily-report: 0 6 * * *" in listed.stdout, listed.stdout + listed.stderr
    fired = manage("litejobs", "cron", "trigger", "daily-report")
    assert fired.returncode == 0, fired.stderr
    wait_for(Report.objects.exists, 30, "the daily report", supervisor_log)
    assert "uploads:" in Report.objects.get().text


class _RatesAPI(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"EUR": 0.92, "GBP": 0.79}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rates_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RatesAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rates.json"
    server.shutdown()


def test_periodic_sync_with_an_outside_api(rates_api: str) -> None:
    result = finished(sync_rates.enqueue(rates_api))
    assert result.return_value == 2
    assert dict(Rate.objects.values_list("currency", "value")) == {"EUR": 0.92, "GBP": 0.79}
    # the cron entry that runs it every 15 minutes
    assert any(s["name"] == "sync-rates" and s["task"] == "shop.tasks.sync_rates"
               for s in app_for().schedules())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_one_supervisor_for_runserver_and_workers(tmp_path: Path) -> None:
    """`manage.py litejobs run -- manage.py runserver`: the web server and the workers under
    one supervisor; SIGTERM drains both and the supervisor exits 0."""
    port = _free_port()
    log = open(tmp_path / "both.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "litejobs", "run", "--workers", "1", "--",
         sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=HERE, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        def post() -> dict | None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/webhooks/", method="POST",
                data=json.dumps({"type": "refund"}).encode(),
                headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    return json.load(reply)
            except OSError:
                return None

        answer = wait_for(post, 60, "runserver to answer",
                          (tmp_path / "both.log").read_text)
        result = finished(default_task_backend.get_result(answer["job"]))
        assert result.return_value == "refund"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, (tmp_path / "both.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
