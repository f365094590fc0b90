"""The shop's background work, as Django 6 tasks (``django.tasks.task``) run by litejobs.

``@task`` takes Django's options (priority, queue_name, takes_context) and, under the
litejobs backend, litejobs' own (retries, timeout, key, tags, concurrency_key,
concurrency_limit, rate_limit, enqueue_on_commit).
"""

import json
import urllib.request

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Count
from django.tasks import task
from django.utils import timezone

import litejobs
from shop.models import Rate, Report, Upload, WebhookEvent


@task(queue_name="files", timeout=600)
def process_upload(upload_id: int) -> dict[str, int]:
    """Count an uploaded file's lines and words, reporting progress as it goes."""
    upload = Upload.objects.get(pk=upload_id)
    with open(upload.path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    words = 0
    job = litejobs.current_job()
    for i, line in enumerate(lines, 1):
        words += len(line.split())
        job.set_progress(i / len(lines), f"line {i} of {len(lines)}")
    upload.lines, upload.words = len(lines), words
    upload.save(update_fields=["lines", "words"])
    return {"lines": len(lines), "words": words}


# At most 5 mails a second through the one SMTP relay, whatever the number of workers.
@task(queue_name="emails", retries=3, concurrency_key="smtp", rate_limit="5/s")
def send_email(to: str, subject: str, body: str) -> None:
    send_mail(subject, body, None, [to])


@task()
def daily_report() -> str:
    """Yesterday's numbers in a Report row (fired every morning by the cron entry
    "daily-report" of settings.TASKS)."""
    counts = {
        "uploads": Upload.objects.count(),
        "webhooks": WebhookEvent.objects.aggregate(n=Count("id"))["n"],
        "rates": Rate.objects.count(),
    }
    text = ", ".join(f"{k}: {v}" for k, v in counts.items())
    Report.objects.create(day=timezone.now().date(), text=text)
    return text


# Enqueued inside the view's transaction: written when it commits, so the worker always
# finds the event row (and never runs for a request that rolled back).
@task(retries=5, enqueue_on_commit=True)
def handle_webhook(event_id: int) -> str:
    event = WebhookEvent.objects.get(pk=event_id)
    event.handled_at = timezone.now()
    event.save(update_fields=["handled_at"])
    return str(event.payload.get("type", "unknown"))


@task(retries=3, timeout=30, key="sync-rates")
def sync_rates(url: str | None = None) -> int:
    """Read the outside API's rates and store them (cron entry "sync-rates"; ``key``: at
    most one sync waits at a time)."""
    with urllib.request.urlopen(url or settings.RATES_URL, timeout=10) as response:
        rates = json.load(response)
    now = timezone.now()
    for currency, value in rates.items():
        Rate.objects.update_or_create(currency=currency,
                                      defaults={"value": float(value), "synced_at": now})
    return len(rates)
