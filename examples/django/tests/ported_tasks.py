"""The tasks of Django's own tests/tasks/tasks.py, for the assertions ported from it
(test_ported.py), plus a few that show what a worker does around a job. Every worker
imports this module (settings_test: ``OPTIONS["task_modules"]``)."""

import os
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.tasks import TaskContext, task
from django.tasks.signals import task_finished, task_started


@task()
def noop_task(*args: tuple, **kwargs: dict) -> None:
    return None


@task
def noop_task_from_bare_decorator(*args: tuple, **kwargs: dict) -> None:
    return None


@task()
async def noop_task_async(*args: tuple, **kwargs: dict) -> None:
    return None


@task()
def calculate_meaning_of_life() -> int:
    return 42


@task()
async def async_meaning_of_life() -> int:
    return 42


@task()
def failing_task_value_error() -> None:
    raise ValueError("This task failed due to ValueError")


@task()
def failing_task_system_exit() -> None:
    raise SystemExit("This task failed due to SystemExit")


@task()
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task()
def complex_return_value() -> object:
    return datetime.now()  # not JSON: the attempt fails with Django's TypeError


@task(takes_context=True)
def get_task_id(context: TaskContext) -> str:
    return context.task_result.id


@task(takes_context=True)
def test_context(context: TaskContext, attempt: int) -> None:
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt


# --- beyond Django's tests: retries, options, signals, connections ------------------------


@task(takes_context=True, retries=2)
def fail_until(context: TaskContext, succeed_at: int) -> dict:
    """Fails its first attempts: the TaskResult gets one error per failed attempt."""
    if context.attempt < succeed_at:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return {"attempt": context.attempt, "workers": len(context.task_result.worker_ids),
            "errors": len(context.task_result.errors)}


@task(timeout=0.5, retries=0)
def overrun(seconds: float) -> None:
    import time

    time.sleep(seconds)


_CONNECTIONS = 0


@receiver(connection_created)
def _count(sender, connection, **kwargs):
    global _CONNECTIONS
    _CONNECTIONS += 1


@task()
def connections_made() -> list[int]:
    """This worker's pid and how many database connections it has opened so far (a query
    opens one when the last job's was closed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return [os.getpid(), _CONNECTIONS]


def _signal_log() -> Path:
    return Path(settings.DATA_DIR) / "signals.log"


@receiver(task_started)
def _started(sender, task_result, **kwargs):
    with open(_signal_log(), "a") as f:
        f.write(f"started {task_result.id} {task_result.status} {os.getpid()} "
                f"{sender.__name__}\n")


@receiver(task_finished)
def _finished(sender, task_result, **kwargs):
    with open(_signal_log(), "a") as f:
        f.write(f"finished {task_result.id} {task_result.status} {os.getpid()} "
                f"{sender.__name__}\n")


@task()
def wait_for_file(path: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
