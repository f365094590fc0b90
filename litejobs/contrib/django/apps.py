"""The Django app ``litejobs.contrib.django``: listed in INSTALLED_APPS, it brings the
``manage.py litejobs`` command (its label is ``litejobs``, not the module's last part)."""

from __future__ import annotations

from django.apps import AppConfig


class LitejobsConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    name = "litejobs.contrib.django"
    label = "litejobs"
    verbose_name = "litejobs"
