"""The shop's tables: what the tasks read and write (through Django's ORM, in the
workers)."""

from django.db import models


class Upload(models.Model):
    """A file a user sent; ``process_upload`` counts its lines and words."""

    path = models.CharField(max_length=500)
    lines = models.IntegerField(null=True)
    words = models.IntegerField(null=True)
    job = models.CharField(max_length=40, blank=True)


class WebhookEvent(models.Model):
    """An incoming webhook, stored at once, handled later by ``handle_webhook``."""

    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    handled_at = models.DateTimeField(null=True)


class Rate(models.Model):
    """An exchange rate, as the outside API last said (``sync_rates``)."""

    currency = models.CharField(max_length=3, unique=True)
    value = models.FloatField()
    synced_at = models.DateTimeField()


class Report(models.Model):
    """The daily report (``daily_report``, by cron)."""

    day = models.DateField()
    text = models.TextField()
