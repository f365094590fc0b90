"""Settings of the litejobs example project (Django 6): TASKS on litejobs.

Files (the Django database, the litejobs database, uploads, sent mail) go under
``LITEJOBS_EXAMPLE_DATA`` (default: ./var), so the tests can use a temporary directory.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LITEJOBS_EXAMPLE_DATA", BASE_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "litejobs.contrib.django",  # the `manage.py litejobs` command
    "shop",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
        # pytest-django's test database is this same file, so the workers (other
        # processes, reading these settings) see what a test wrote
        "TEST": {"NAME": DATA_DIR / "db.sqlite3"},
        "OPTIONS": {"timeout": 20},
    }
}

TASKS = {
    "default": {
        "BACKEND": "litejobs.contrib.django.LitejobsBackend",
        "QUEUES": ["default", "files", "emails"],
        "OPTIONS": {
            "database": DATA_DIR / "jobs.db",
            # litejobs' [cron.NAME] tables: fired by `python manage.py litejobs run`
            "cron": {
                "daily-report": {"schedule": "0 6 * * *", "task": "shop.tasks.daily_report"},
                "sync-rates": {"schedule": "*/15 * * * *", "task": "shop.tasks.sync_rates"},
            },
        },
    }
}

MEDIA_ROOT = DATA_DIR / "uploads"
MAILERS = {  # each mail a file: what the tests count
    "default": {"BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "OPTIONS": {"file_path": DATA_DIR / "sent-mail"}},
}
DEFAULT_FROM_EMAIL = "shop@example.com"
#: The outside API the periodic sync reads (a JSON object {currency: rate}).
RATES_URL = os.environ.get("RATES_URL", "http://127.0.0.1:8099/rates.json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.tasks": {"handlers": ["console"], "level": "WARNING"}},
}
