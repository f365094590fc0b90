"""The tests' settings: the example's, plus the tasks ported from Django's own test suite
(``tests.ported_tasks``, imported by every worker through ``task_modules``) and a queue no
supervisor serves while the tests run (``held``: paused), for results that must stay
READY."""

import os
import tempfile

# Fresh files for each test run, shared with the supervisor the tests start (it inherits
# the variable, so it reads these settings with the same directory).
os.environ.setdefault("LITEJOBS_EXAMPLE_DATA", tempfile.mkdtemp(prefix="litejobs-django-"))

from mysite.settings import *  # noqa: F403

TASKS["default"]["QUEUES"] += ["held", "queue_1"]  # noqa: F405
TASKS["default"]["OPTIONS"]["task_modules"] = ["tests.ported_tasks"]  # noqa: F405
TASKS["immediate"] = {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend",  # noqa: F405
                      "QUEUES": []}
