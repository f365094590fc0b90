"""The shop's web app (FastAPI). Every request that starts work enqueues a job and answers at
once; the jobs run in `litejobs run`'s workers. The routes are ``async def``: they enqueue
with ``await task.aenqueue(...)`` and read jobs with ``await app.aget_job(id)``, which run
the database calls in a thread, so the event loop never waits on SQLite.

    litejobs run -- uvicorn --host 127.0.0.1 --port 8000 web:app
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from tasks import Tasks, shop

import litejobs


class Newsletter(BaseModel):
    subject: str = Field(min_length=1)
    body: str = ""
    recipients: list[str] = Field(min_length=1)


def create_app(tasks: Tasks, webhook_secret: str | None = None) -> FastAPI:
    """The FastAPI app, enqueueing into ``tasks`` (a test gives its own, on a fresh
    database). ``webhook_secret`` (default: ``WEBHOOK_SECRET``) checks the payment
    provider's signatures."""
    secret = webhook_secret or os.environ.get("WEBHOOK_SECRET", "")
    web = FastAPI(title="Shop (litejobs FastAPI example)")

    @web.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return INDEX

    # (1) A file, processed by a job whose progress the page polls. The body is the file.
    @web.post("/uploads", status_code=202)
    async def upload(request: Request, name: str = "upload.txt") -> dict[str, Any]:
        content = await request.body()
        if not content:
            raise HTTPException(400, "send the file as the request body")
        stored = f"{uuid.uuid4().hex[:8]}-{re.sub(r'[^A-Za-z0-9._-]', '_', name)[-64:]}"
        await asyncio.to_thread(_save, tasks.data / "uploads", stored, content)
        job = await tasks.process_file.aenqueue(stored)
        return {"job": job.id, "page": f"/uploads/{job.id}"}

    async def upload_job(job_id: int) -> litejobs.Job:
        job = await tasks.app.aget_job(job_id)
        if job is None or job.task != tasks.process_file.name:
            raise HTTPException(404, f"no upload job {job_id}")
        return job

    @web.get("/uploads/{job_id}.json")
    async def upload_status(job_id: int) -> dict[str, Any]:
        return await progress_of(await upload_job(job_id))

    @web.get("/uploads/{job_id}", response_class=HTMLResponse)
    async def upload_page(job_id: int) -> str:
        return upload_html(await progress_of(await upload_job(job_id)))

    # (2) A batch of emails, sent by jobs on the rate-limited "mail" queue.
    @web.post("/newsletter", status_code=202)
    async def newsletter(letter: Newsletter) -> dict[str, Any]:
        if not all("@" in r for r in letter.recipients):
            raise HTTPException(400, "recipients must be email addresses")
        calls = [tasks.send_email.prepare(to, letter.subject, letter.body)
                 for to in letter.recipients]
        # One transaction for the whole batch, in a thread (there is no aenqueue_many).
        batch = await asyncio.to_thread(tasks.app.enqueue_many, calls)
        return {"jobs": [job.id for job in batch]}

    # (4) An incoming webhook: checked and accepted at once, handled later by a job.
    @web.post("/webhooks/payments", status_code=202)
    async def payment_webhook(request: Request) -> dict[str, Any]:
        if not secret:
            raise HTTPException(503, "set WEBHOOK_SECRET to accept webhooks")
        raw = await request.body()
        if not litejobs.verify_signature(secret, request.headers.get("Litejobs-Signature"),
                                         raw):
            raise HTTPException(401, "bad or missing Litejobs-Signature")
        try:
            event = json.loads(raw)
            event_id = str(event["id"])
        except (ValueError, KeyError, TypeError):
            raise HTTPException(400, 'the body must be a JSON object with an "id"') from None
        # A provider that redelivers the event gets the same job back, not a second payment.
        job = await tasks.handle_payment.options(key=f"payment:{event_id}").aenqueue(event)
        return {"job": job.id}

    @web.get("/payments")
    async def payments() -> list[Any]:
        text = await asyncio.to_thread(_read, tasks.data / "payments.jsonl")
        return [json.loads(line) for line in (text or "").splitlines()]

    # (3) The daily report, written by a cron job.
    @web.get("/reports")
    async def reports() -> list[Any]:
        return await asyncio.to_thread(_reports, tasks.data / "reports")

    # (5) The catalog, synced from the outside API by a cron job.
    @web.get("/catalog")
    async def catalog() -> Any:
        text = await asyncio.to_thread(_read, tasks.data / "catalog.json")
        if text is None:
            return JSONResponse({"detail": "not synced yet: litejobs cron trigger "
                                           "sync_catalog"}, 404)
        return json.loads(text)

    return web


async def progress_of(job: litejobs.Job) -> dict[str, Any]:
    """What the upload page shows: state, progress and, once done, the result or error."""
    fraction, message = job.progress or (0.0, None)
    out: dict[str, Any] = {"job": job.id, "state": job.state.value, "progress": fraction,
                           "message": message, "result": None, "error": None}
    if job.state is litejobs.State.SUCCEEDED:
        out["result"] = await job.aresult(timeout=0)
    elif job.state in (litejobs.State.FAILED, litejobs.State.CANCELLED):
        out["error"] = job.error
    return out


def _save(folder: Path, name: str, content: bytes) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(content)


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _reports(folder: Path) -> list[Any]:
    files = sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []
    return [json.loads(f.read_text()) for f in files]


def upload_html(status: dict[str, Any]) -> str:
    """The upload's page: a progress bar polling the job until it ends, then the counts."""
    result, error = status["result"], status["error"]
    if result:
        shown = (f"<p>{html.escape(result['file'])}: {result['lines']} lines, "
                 f"{result['words']} words; most used: {html.escape(', '.join(result['top']))}"
                 "</p>")
    elif error:
        shown = f"<p>Failed: {html.escape(error)}</p>"
    else:
        shown = POLL.replace("JOB", str(status["job"]))
    return f"""<!doctype html>
<link rel="icon" href="data:,">
<title>Upload {status['job']}: litejobs FastAPI example</title>
<h1>Upload (job {status['job']})</h1>
<p><progress id="bar" max="1" value="{status['progress']}"></progress>
  <span id="state">{status['state']}</span>
  <span id="message">{html.escape(status['message'] or '')}</span></p>
{shown}
<p><a href="/">back</a></p>
"""


POLL = """<script>
// Poll the job's status until it ends, then show the page with its result.
const poll = setInterval(async () => {
  const status = await (await fetch("/uploads/JOB.json")).json();
  document.getElementById("bar").value = status.progress;
  document.getElementById("state").textContent = status.state;
  document.getElementById("message").textContent = status.message || "";
  if (status.result || status.error) { clearInterval(poll); location.reload(); }
}, 300);
</script>"""

INDEX = """<!doctype html>
<link rel="icon" href="data:,">
<title>Shop: litejobs FastAPI example</title>
<h1>Shop</h1>
<p><a href="/reports">reports</a> · <a href="/payments">payments</a> ·
  <a href="/catalog">catalog</a> · <a href="/docs">API</a></p>
<h2>Process a file</h2>
<form id="upload"><input type="file" name="file" required> <button>Upload</button></form>
<script>
// The upload answers at once with the job; its page shows the job's progress.
document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = event.target.file.files[0];
  const response = await fetch("/uploads?name=" + encodeURIComponent(file.name),
                               {method: "POST", body: file});
  const answer = await response.json();
  if (response.ok) location.href = answer.page; else alert(answer.detail);
});
</script>
"""

app = create_app(shop)  # uvicorn web:app
