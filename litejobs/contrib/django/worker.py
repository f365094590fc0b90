"""The app ``python manage.py litejobs`` hands to litejobs (``LITEJOBS_APP`` =
``litejobs.contrib.django.worker:app``): importing it sets Django up (with the
``DJANGO_SETTINGS_MODULE`` every worker inherits from the supervisor) and imports each
installed app's ``tasks`` module, so a worker, a fresh interpreter, knows every Django task
before its first job. ``LITEJOBS_DJANGO_BACKEND`` names the backend alias (default
"default").
"""

from __future__ import annotations

import os

import django
from django.apps import apps

from litejobs.app import App
from litejobs.contrib.django.bridge import BACKEND_ENV, discover

__all__ = ["app"]

if not apps.ready:  # a worker; `manage.py litejobs` itself has set Django up already
    django.setup()

app: App = discover(os.environ.get(BACKEND_ENV) or "default")
