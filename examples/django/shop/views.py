"""The shop's HTTP side: each view does the quick part and enqueues the rest."""

import json
import uuid

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.tasks import default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from litejobs.contrib.django import app_for
from shop.models import Upload, WebhookEvent
from shop.tasks import handle_webhook, process_upload, send_email


@csrf_exempt
@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    """Store the file, then count it in the background: the reply names the job to poll."""
    sent = request.FILES["file"]
    settings.MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
    path = settings.MEDIA_ROOT / f"{uuid.uuid4().hex}-{sent.name}"
    with open(path, "wb") as f:
        for chunk in sent.chunks():
            f.write(chunk)
    row = Upload.objects.create(path=str(path))
    result = process_upload.enqueue(row.id)
    Upload.objects.filter(pk=row.id).update(job=result.id)
    return JsonResponse({"upload": row.id, "job": result.id}, status=202)


@require_GET
def job_status(request: HttpRequest, job_id: str) -> JsonResponse:
    """The job as the page's progress bar needs it: status, fraction, message, value."""
    try:
        result = default_task_backend.get_result(job_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": f"no job {job_id}"}, status=404)
    job = app_for().get_job(int(job_id))
    progress = job.progress if job is not None else None
    return JsonResponse({
        "status": result.status,
        "progress": None if progress is None else progress[0],
        "message": None if progress is None else progress[1],
        "value": result.return_value if result.status == "SUCCESSFUL" else None,
        "attempts": result.attempts,
    })


@csrf_exempt
@require_POST
def newsletter(request: HttpRequest) -> JsonResponse:
    """One email a recipient; the task's rate limit spaces them out."""
    body = json.loads(request.body)
    jobs = [send_email.enqueue(to, body["subject"], body["text"]).id
            for to in body["recipients"]]
    return JsonResponse({"jobs": jobs}, status=202)


@csrf_exempt
@require_POST
def webhook(request: HttpRequest) -> JsonResponse:
    """Answer the sender at once; the event is handled by a worker after the commit."""
    with transaction.atomic():
        event = WebhookEvent.objects.create(payload=json.loads(request.body))
        result = handle_webhook.enqueue(event.id)  # written when this block commits
    return JsonResponse({"event": event.id, "job": result.id}, status=202)
