"""The app ``python manage.py litejobs`` hands to litejobs (``LITEJOBS_APP`` =
``litejobs.contrib.django.worker:app``): importing it sets Django up (with the
``DJANGO_SETTINGS_MODULE`` every worker inherits from the supervisor) and imports each
installed app's ``tasks`` module, so a worker, a fresh interpreter, knows every Django task
before its first job. ``LITEJOBS_DJANGO_BACKEND`` names the backend alias (default
"default").
"""

from __future__ import annotations

import logging
import os
import sys

import django
from django.apps import apps

from litejobs.app import App
from litejobs.contrib.django.bridge import BACKEND_ENV, discover
from litejobs.tasklog import TaskLogHandler

__all__ = ["app", "one_copy_of_each_record"]


def one_copy_of_each_record() -> int:
    """In a worker, keep Django's console handlers from printing what the worker already
    sends to the supervisor's log: a worker's stderr is the supervisor's, so with ``DEBUG =
    True`` (Django's "console" handler on the "django" logger) every ``django.tasks``
    record, traceback included, appeared twice, once bare and once under its job. A stream
    handler on the worker's stdout or stderr whose records reach the root logger keeps only
    those below the level sent to the supervisor. Returns how many handlers it filtered."""
    forwarder = next((h for h in logging.getLogger().handlers
                      if isinstance(h, TaskLogHandler)), None)
    if forwarder is None:  # not a worker (`manage.py litejobs` itself), or LOGGING took root
        return 0
    streams = {id(s) for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)}
    level = forwarder.level

    def unsent(record: logging.LogRecord) -> bool:
        return record.levelno < level

    filtered = 0
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values()
               if isinstance(lg, logging.Logger)]
    for logger in loggers:
        if not _reaches_root(logger):
            continue  # its records are not sent: its handlers are their only copy
        for handler in logger.handlers:
            if (type(handler) is logging.StreamHandler
                    and id(getattr(handler, "stream", None)) in streams):
                handler.addFilter(unsent)
                filtered += 1
    return filtered


def _reaches_root(logger: logging.Logger) -> bool:
    node: logging.Logger | None = logger
    while node is not None and node is not logging.getLogger():
        if not node.propagate:
            return False
        node = node.parent
    return True


if not apps.ready:  # a worker; `manage.py litejobs` itself has set Django up already
    django.setup()
    one_copy_of_each_record()

app: App = discover(os.environ.get(BACKEND_ENV) or "default")
