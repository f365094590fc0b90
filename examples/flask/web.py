"""The shop's web app (Flask). Every request that starts work enqueues a job and answers at
once; the jobs run in `litejobs run`'s workers.

    litejobs run -- gunicorn --bind 127.0.0.1:8000 --workers 2 web:app
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import flask
from tasks import Tasks, shop
from werkzeug.utils import secure_filename

import litejobs


def create_app(tasks: Tasks, webhook_secret: str | None = None) -> flask.Flask:
    """The Flask app, enqueueing into ``tasks`` (a test gives its own, on a fresh database).
    ``webhook_secret`` (default: ``WEBHOOK_SECRET``) checks the payment provider's
    signatures."""
    secret = webhook_secret or os.environ.get("WEBHOOK_SECRET", "")
    web = flask.Flask(__name__)
    web.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024

    @web.get("/")
    def index() -> str:
        return flask.render_template("index.html", stats=tasks.app.stats()["states"])

    # (1) A file, processed by a job whose progress the page polls.
    @web.post("/uploads")
    def upload() -> tuple[dict[str, Any], int]:
        file = flask.request.files.get("file")
        if file is None or not file.filename:
            return {"error": "send a file in the form field 'file'"}, 400
        name = f"{uuid.uuid4().hex[:8]}-{secure_filename(file.filename) or 'upload'}"
        (tasks.data / "uploads").mkdir(exist_ok=True)
        file.save(tasks.data / "uploads" / name)
        job = tasks.process_file.enqueue(name)
        return {"job": job.id, "page": flask.url_for("upload_page", job_id=job.id)}, 202

    def upload_job(job_id: int) -> litejobs.Job:
        job = tasks.app.get_job(job_id)
        if job is None or job.task != tasks.process_file.name:
            flask.abort(404)
        return job

    @web.get("/uploads/<int:job_id>")
    def upload_page(job_id: int) -> str:
        return flask.render_template("upload.html", **progress_of(upload_job(job_id)))

    @web.get("/uploads/<int:job_id>.json")
    def upload_status(job_id: int) -> dict[str, Any]:
        return progress_of(upload_job(job_id))

    # (2) A batch of emails, sent by jobs on the rate-limited "mail" queue.
    @web.post("/newsletter")
    def newsletter() -> tuple[dict[str, Any], int]:
        form = flask.request.get_json(silent=True) or flask.request.form
        subject, body = form.get("subject", ""), form.get("body", "")
        recipients: Any = form.get("recipients", [])
        if isinstance(recipients, str):  # the form's textarea: one address per line
            recipients = recipients.split()
        if not subject or not recipients or not all("@" in r for r in recipients):
            return {"error": "give a subject and recipients (email addresses)"}, 400
        batch = tasks.app.enqueue_many(
            [tasks.send_email.prepare(to, subject, body) for to in recipients])
        return {"jobs": [job.id for job in batch]}, 202  # all committed in one transaction

    # (4) An incoming webhook: checked and accepted at once, handled later by a job.
    @web.post("/webhooks/payments")
    def payment_webhook() -> tuple[dict[str, Any], int]:
        if not secret:
            return {"error": "set WEBHOOK_SECRET to accept webhooks"}, 503
        raw = flask.request.get_data()
        if not litejobs.verify_signature(secret, flask.request.headers.get(
                "Litejobs-Signature"), raw):
            return {"error": "bad or missing Litejobs-Signature"}, 401
        try:
            event = json.loads(raw)
            event_id = str(event["id"])
        except (ValueError, KeyError, TypeError):
            return {"error": 'the body must be a JSON object with an "id"'}, 400
        # A provider that redelivers the event gets the same job back, not a second payment.
        job = tasks.handle_payment.options(key=f"payment:{event_id}").enqueue(event)
        return {"job": job.id}, 202

    @web.get("/payments")
    def payments() -> list[Any]:
        path = tasks.data / "payments.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []

    # (3) The daily report, written by a cron job.
    @web.get("/reports")
    def reports() -> list[Any]:
        folder = tasks.data / "reports"
        files = sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []
        return [json.loads(f.read_text()) for f in files]

    # (5) The catalog, synced from the outside API by a cron job.
    @web.get("/catalog")
    def catalog() -> tuple[Any, int]:
        path = tasks.data / "catalog.json"
        if not path.exists():
            return {"error": "not synced yet: litejobs cron trigger sync_catalog"}, 404
        return json.loads(path.read_text()), 200

    return web


def progress_of(job: litejobs.Job) -> dict[str, Any]:
    """What the upload page shows: state, progress and, once done, the result or error."""
    fraction, message = job.progress or (0.0, None)
    out: dict[str, Any] = {"job": job.id, "state": job.state.value, "progress": fraction,
                           "message": message, "result": None, "error": None}
    if job.state is litejobs.State.SUCCEEDED:
        out["result"] = job.result(timeout=0)
    elif job.state in (litejobs.State.FAILED, litejobs.State.CANCELLED):
        out["error"] = job.error
    return out


app = create_app(shop)  # gunicorn web:app
