"""The shop's background work: the litejobs App and its tasks.

`litejobs run` imports this module (litejobs.toml: ``app = "tasks:jobs"``) to run the tasks;
the web app (web.py) imports it to enqueue them. Both build the App from litejobs.toml, so
they open the same database file. ``catalog.sync`` is an ``async def`` task: it runs on the
worker's event loop, with httpx's async client.

Files the tasks read and write live beside the database: ``uploads/``, ``outbox/``,
``reports/``, ``payments.jsonl`` and ``catalog.json``.
"""

from __future__ import annotations

import collections
import email.message
import json
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import litejobs

CONFIG = Path(__file__).resolve().parent / "litejobs.toml"
#: The outside API the catalog is synced from (in the tests: a local server the test starts).
CATALOG_URL = os.environ.get("CATALOG_URL", "http://127.0.0.1:8001/products.json")
#: Seconds of pretend work per tenth of a file, so the progress bar has something to show.
STEP_PAUSE = 0.1


@dataclass(frozen=True)
class Tasks:
    """The App and its tasks, built on one database: production's (litejobs.toml), or a
    fresh one per test."""

    app: litejobs.App
    data: Path
    process_file: litejobs.Task[[str], dict[str, Any]]
    send_email: litejobs.Task[[str, str, str], str]
    handle_payment: litejobs.Task[[dict[str, Any]], str]
    daily_report: litejobs.Task[[], str]
    sync_catalog: litejobs.Task[[], Coroutine[Any, Any, int]]


def create_tasks(database: str | os.PathLike[str] | None = None) -> Tasks:
    """Register the shop's tasks on an App on ``database`` (default: litejobs.toml's, or
    ``LITEJOBS_DATABASE``)."""
    jobs = litejobs.App.from_config(CONFIG) if database is None else litejobs.App(database)
    data = Path(jobs.path).parent

    @jobs.task(name="files.process", timeout=600)
    def process_file(name: str) -> dict[str, Any]:
        """Count the lines and words of an uploaded file, reporting progress by tenths."""
        text = (data / "uploads" / name).read_text(errors="replace")
        lines = text.splitlines()
        words: collections.Counter[str] = collections.Counter()
        ctx = litejobs.current_job()
        for tenth in range(10):
            for line in lines[len(lines) * tenth // 10:len(lines) * (tenth + 1) // 10]:
                words.update(w.lower() for w in line.split())
            time.sleep(STEP_PAUSE)
            ctx.set_progress((tenth + 1) / 10, f"{(tenth + 1) * 10}% of {len(lines)} lines")
        return {"file": name, "lines": len(lines), "words": sum(words.values()),
                "top": [w for w, _ in words.most_common(3)]}

    # The "mail" queue's rate limit (litejobs.toml) spaces the sends out, across workers.
    @jobs.task(name="mail.send", queue="mail", retries=5)
    def send_email(to: str, subject: str, body: str) -> str:
        """Send one email. Here it goes to outbox/ as a .eml file; in production, hand
        ``message`` to ``smtplib.SMTP(host).send_message``."""
        message = email.message.EmailMessage()
        message["From"] = "shop@example.com"
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        outbox = data / "outbox"
        outbox.mkdir(exist_ok=True)
        # Named by job id: a retried job rewrites its own file instead of sending twice.
        path = outbox / f"{litejobs.current_job().id}.eml"
        path.write_bytes(bytes(message))
        return path.name

    @jobs.task(name="payments.handle")
    def handle_payment(event: dict[str, Any]) -> str:
        """Record a payment a provider told us about (the webhook answered it already)."""
        record = {"event": event["id"], "order": event.get("order"),
                  "amount": event.get("amount"), "job": litejobs.current_job().id}
        with open(data / "payments.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return f"order {event.get('order')} paid"

    @jobs.cron("0 7 * * *", name="daily_report", timezone="UTC")
    @jobs.task(name="reports.daily")
    def daily_report() -> str:
        """Write the day's report: the figures so far, dated by the cron instant it was due
        (``litejobs cron trigger daily_report`` runs it now, dated today)."""
        day = litejobs.current_job().scheduled_at.date().isoformat()
        report = {
            "date": day,
            "uploads": _count(data / "uploads"),
            "emails_sent": _count(data / "outbox"),
            "payments": len(_lines(data / "payments.jsonl")),
        }
        folder = data / "reports"
        folder.mkdir(exist_ok=True)
        (folder / f"{day}.json").write_text(json.dumps(report, indent=2) + "\n")
        return day

    # Its own queue (concurrency 1 in litejobs.toml): one sync at a time, beside the rest.
    @jobs.cron("*/15 * * * *", name="sync_catalog")
    @jobs.task(name="catalog.sync", queue="sync", timeout=60)
    async def sync_catalog() -> int:
        """Fetch the product list from the outside API and keep a copy; an unreachable API is
        an error, retried with back-off."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(CATALOG_URL)
            response.raise_for_status()
        products = response.json()
        tmp = data / "catalog.json.tmp"
        tmp.write_text(json.dumps({"synced_at": time.time(), "products": products}))
        tmp.replace(data / "catalog.json")  # readers never see half a file
        return len(products)

    return Tasks(jobs, data, process_file, send_email, handle_payment, daily_report,
                 sync_catalog)


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


shop = create_tasks()  # on litejobs.toml's database: the web app's and the workers'
jobs = shop.app  # for `litejobs run` (litejobs.toml: app = "tasks:jobs")
