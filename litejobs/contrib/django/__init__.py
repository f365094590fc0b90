"""Django 6's tasks framework (``django.tasks``) on litejobs: the ``LitejobsBackend``.

    # settings.py
    INSTALLED_APPS = [..., "litejobs.contrib.django"]   # the `manage.py litejobs` command
    TASKS = {"default": {"BACKEND": "litejobs.contrib.django.LitejobsBackend",
                         "OPTIONS": {"database": BASE_DIR / "jobs.db"}}}

    python manage.py litejobs run          # the supervisor; Django is set up in every worker

See docs/django.md. Needs the ``django`` extra: ``pip install 'litejobs[django]'``.
"""

from __future__ import annotations

try:
    import django.tasks  # noqa: F401  (Django 6 or later: the tasks framework)
except ImportError as exc:  # one line saying what to do, not a traceback into Django
    raise ImportError(
        f"litejobs.contrib.django needs Django 6 or later ({exc}): "
        "pip install 'litejobs[django]'"
    ) from None

from litejobs.contrib.django.backend import LitejobsBackend, LitejobsTask
from litejobs.contrib.django.bridge import app_for

__all__ = ["LitejobsBackend", "LitejobsTask", "app_for"]
