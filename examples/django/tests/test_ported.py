"""Assertions of Django's own tests/tasks/ (test_tasks.py, test_immediate_backend.py,
test_dummy_backend.py, test_custom_backend.py) that apply to a real backend, run against
LitejobsBackend with a real supervisor. Where Django's ImmediateBackend runs a task inside
enqueue, these wait for a worker to run it; where Django's DummyBackend keeps a result READY,
these enqueue on the paused "held" queue. docs/django.md lists what was left out, and why."""

import asyncio
import dataclasses
import functools
import pickle
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from re import escape

import pytest
from django.db import transaction
from django.tasks import (
    DEFAULT_TASK_QUEUE_NAME,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.test import override_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from litejobs.contrib.django import LitejobsBackend
from tests import ported_tasks as test_tasks
from tests.conftest import finished

pytestmark = pytest.mark.usefixtures("supervisor")

HELD = "held"  # a paused queue: its jobs stay READY


def run_async(fn: Callable[[], Coroutine[None, None, None]]) -> Callable[[], None]:
    """An async test, run on an event loop of its own (no pytest-asyncio needed)."""

    @functools.wraps(fn)
    def test() -> None:
        asyncio.run(fn())

    return test


def held(t: Task) -> Task:
    return t.using(queue_name=HELD)


# --- test_tasks.py ---------------------------------------------------------------------


def test_using_correct_backend() -> None:
    assert default_task_backend == task_backends["default"]
    assert isinstance(task_backends["default"], LitejobsBackend)
    assert default_task_backend.alias == "default"
    assert all([default_task_backend.supports_defer, default_task_backend.supports_async_task,
                default_task_backend.supports_get_result,
                default_task_backend.supports_priority])


def test_task_decorator() -> None:
    assert isinstance(test_tasks.noop_task, Task)
    assert isinstance(test_tasks.noop_task_async, Task)
    assert isinstance(test_tasks.noop_task_from_bare_decorator, Task)


def test_enqueue_task() -> None:
    result = held(test_tasks.noop_task).enqueue()
    assert result.status == TaskResultStatus.READY
    assert result.task == held(test_tasks.noop_task)
    assert result.args == []
    assert result.kwargs == {}
    assert result.enqueued_at is not None


@run_async
async def test_enqueue_task_async() -> None:
    result = await held(test_tasks.noop_task).aenqueue()
    assert result.status == TaskResultStatus.READY
    assert result.task == held(test_tasks.noop_task)
    assert result.args == []
    assert result.kwargs == {}


def test_enqueue_with_invalid_argument() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        test_tasks.noop_task.enqueue(datetime.now())


@run_async
async def test_aenqueue_with_invalid_argument() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        await test_tasks.noop_task.aenqueue(datetime.now())


def test_using_priority() -> None:
    assert test_tasks.noop_task.priority == 0
    assert test_tasks.noop_task.using(priority=1).priority == 1
    assert test_tasks.noop_task.priority == 0


def test_using_queue_name() -> None:
    assert test_tasks.noop_task.queue_name == DEFAULT_TASK_QUEUE_NAME
    assert test_tasks.noop_task.using(queue_name="queue_1").queue_name == "queue_1"
    assert test_tasks.noop_task.queue_name == DEFAULT_TASK_QUEUE_NAME


def test_using_run_after() -> None:
    now = timezone.now()
    assert test_tasks.noop_task.run_after is None
    assert test_tasks.noop_task.using(run_after=now).run_after == now
    assert test_tasks.noop_task.run_after is None


def test_using_unknown_backend() -> None:
    with pytest.raises(InvalidTaskBackend, match=escape("The connection 'unknown' doesn't exist.")):
        test_tasks.noop_task.using(backend="unknown")


def test_using_creates_new_instance() -> None:
    new_task = test_tasks.noop_task.using()
    assert new_task == test_tasks.noop_task
    assert new_task is not test_tasks.noop_task


def test_chained_using() -> None:
    now = timezone.now()
    run_after_task = test_tasks.noop_task.using(run_after=now)
    priority_task = run_after_task.using(priority=10)
    assert priority_task.priority == 10
    assert priority_task.run_after == now
    assert run_after_task.priority == 0


@run_async
async def test_refresh_result() -> None:
    result = await held(test_tasks.noop_task).aenqueue()
    original = dataclasses.asdict(result)
    await result.arefresh()
    assert dataclasses.asdict(result) == original
    result2 = held(test_tasks.noop_task).enqueue()
    original2 = dataclasses.asdict(result2)
    result2.refresh()
    assert dataclasses.asdict(result2) == original2


def test_naive_datetime() -> None:
    with pytest.raises(InvalidTask, match=escape("run_after must be an aware datetime.")):
        test_tasks.noop_task.using(run_after=datetime.now())


def test_invalid_priority() -> None:
    message = (f"priority must be a whole number between {TASK_MIN_PRIORITY} and "
               f"{TASK_MAX_PRIORITY}.")
    for bad in (-101, 101, 3.1):
        with pytest.raises(InvalidTask, match=escape(message)):
            test_tasks.noop_task.using(priority=bad)
    for good in (100, -100, 0):
        test_tasks.noop_task.using(priority=good)


def test_unknown_queue_name() -> None:
    with pytest.raises(InvalidTask, match=escape("Queue 'queue-2' is not valid for backend.")):
        test_tasks.noop_task.using(queue_name="queue-2")


def test_call_task() -> None:
    assert test_tasks.calculate_meaning_of_life.call() == 42
    assert test_tasks.noop_task_async.call() is None


def test_get_result() -> None:
    result = default_task_backend.enqueue(held(test_tasks.noop_task), (), {})
    new_result = test_tasks.noop_task.get_result(result.id)
    assert result == new_result


@run_async
async def test_get_result_async() -> None:
    result = await default_task_backend.aenqueue(held(test_tasks.noop_task), (), {})
    new_result = await test_tasks.noop_task.aget_result(result.id)
    assert result == new_result


@run_async
async def test_get_missing_result() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        test_tasks.noop_task.get_result("123456789")
    with pytest.raises(TaskResultDoesNotExist):
        await test_tasks.noop_task.aget_result("123456789")
    with pytest.raises(TaskResultDoesNotExist):  # not even a job id
        test_tasks.noop_task.get_result("abc")


def test_get_incorrect_result() -> None:
    result = default_task_backend.enqueue(held(test_tasks.noop_task_async), (), {})
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        test_tasks.noop_task.get_result(result.id)


@run_async
async def test_get_incorrect_result_async() -> None:
    result = await default_task_backend.aenqueue(held(test_tasks.noop_task_async), (), {})
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        await test_tasks.noop_task.aget_result(result.id)


def test_invalid_function() -> None:
    def local() -> None:
        pass

    for invalid_function in (any, local):
        with pytest.raises(InvalidTask,
                           match=escape("Task function must be defined at a module level.")):
            task()(invalid_function)


def test_get_backend() -> None:
    assert test_tasks.noop_task.backend == "default"
    assert isinstance(test_tasks.noop_task.get_backend(), LitejobsBackend)


def test_name_and_module_path() -> None:
    assert test_tasks.noop_task.name == "noop_task"
    assert test_tasks.noop_task.module_path == "tests.ported_tasks.noop_task"
    assert import_string(test_tasks.noop_task.module_path) is test_tasks.noop_task


def test_pickle_task_and_result() -> None:
    assert pickle.loads(pickle.dumps(test_tasks.noop_task)) == test_tasks.noop_task
    result = held(test_tasks.noop_task).enqueue()
    assert pickle.loads(pickle.dumps(result)) == result


def test_task_error_invalid_exception() -> None:
    result = finished(test_tasks.failing_task_value_error.enqueue())
    assert len(result.errors) == 1
    assert result.errors[0].exception_class is ValueError
    object.__setattr__(result.errors[0], "exception_class_path", "subprocess.run")
    with pytest.raises(ValueError, match=escape("'subprocess.run' does not reference a valid "
                                                "exception.")):
        _ = result.errors[0].exception_class


def test_takes_context_without_taking_context() -> None:
    with pytest.raises(InvalidTask, match=escape("Task takes context but does not have a "
                                                 "first argument of 'context'.")):
        task(takes_context=True)(test_tasks.calculate_meaning_of_life.func)


def test_run_after_in_decorator() -> None:
    with pytest.raises(TypeError, match="run_after cannot be defined statically"):
        task(run_after=timezone.now())(test_tasks.calculate_meaning_of_life.func)


# --- test_immediate_backend.py: the same outcomes, from a worker -------------------------


@pytest.mark.parametrize("t", [test_tasks.noop_task, test_tasks.noop_task_async],
                         ids=["sync", "async"])
def test_enqueue_task_runs(t: Task) -> None:
    result = finished(t.enqueue(1, two=3))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.is_finished is True
    assert result.started_at is not None
    assert result.last_attempted_at is not None
    assert result.finished_at is not None
    assert result.started_at >= result.enqueued_at
    assert result.finished_at >= result.started_at
    assert result.return_value is None
    assert result.task == t
    assert result.args == [1]
    assert result.kwargs == {"two": 3}
    assert result.attempts == 1


@pytest.mark.parametrize("t,exception,message", [
    (test_tasks.failing_task_value_error, ValueError, "This task failed due to ValueError"),
    (test_tasks.failing_task_system_exit, SystemExit, "This task failed due to SystemExit"),
], ids=["ValueError", "SystemExit"])
def test_catches_exception(t: Task, exception: type[BaseException], message: str) -> None:
    result = finished(t.enqueue())
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert result.is_finished is True
    assert result.started_at is not None
    assert result.last_attempted_at is not None
    assert result.finished_at is not None
    assert result.started_at >= result.enqueued_at
    assert result.finished_at >= result.started_at
    assert result.errors[0].exception_class is exception
    assert result.errors[0].traceback.endswith(f"{exception.__name__}: {message}\n"), \
        result.errors[0].traceback
    assert result.task == t
    assert result.args == []
    assert result.kwargs == {}


def test_complex_exception() -> None:
    result = finished(test_tasks.complex_exception.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result._return_value is None
    assert result.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in result.errors[0].traceback


def test_complex_return_value() -> None:
    result = finished(test_tasks.complex_return_value.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.started_at is not None
    assert result.finished_at >= result.started_at
    assert result._return_value is None
    assert result.errors[0].exception_class is TypeError
    assert "Unsupported type" in result.errors[0].traceback


def test_result() -> None:
    result = finished(default_task_backend.enqueue(test_tasks.calculate_meaning_of_life,
                                                   [], {}))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


@run_async
async def test_result_async() -> None:
    result = await default_task_backend.aenqueue(test_tasks.async_meaning_of_life, [], {})
    deadline = asyncio.get_running_loop().time() + 30
    while not result.is_finished and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        await result.arefresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_takes_context() -> None:
    result = finished(test_tasks.get_task_id.enqueue())
    assert result.return_value == result.id


def test_context() -> None:
    result = finished(test_tasks.test_context.enqueue(1))
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors


def test_validate_on_enqueue() -> None:
    task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="queue_1")
    tasks = {"default": {"BACKEND": "litejobs.contrib.django.LitejobsBackend",
                         "QUEUES": ["queue-1"], "OPTIONS": default_task_backend.options}}
    with override_settings(TASKS=tasks), \
            pytest.raises(InvalidTask, match="Queue 'queue_1' is not valid for backend"):
        task_with_custom_queue_name.enqueue()


def test_enqueue_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="django.tasks"):
        result = held(test_tasks.noop_task).enqueue()
    assert any("enqueued" in r.getMessage() and result.id in r.getMessage()
               for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_doesnt_wait_until_transaction_commit_by_default() -> None:
    with transaction.atomic():
        result = held(test_tasks.noop_task).enqueue()
        assert result.enqueued_at is not None
        assert result.id != ""


# --- test_dummy_backend.py / older enqueue_on_commit: here OPTIONS or the task's option ---


@pytest.mark.django_db(transaction=True)
def test_wait_until_transaction_commit() -> None:
    t = held(test_tasks.noop_task).using(enqueue_on_commit=True)
    before = default_task_backend.bridge.app.stats()["queues"].get(HELD, {}).get("queued", 0)
    with transaction.atomic():
        result = t.enqueue()
        assert result.enqueued_at is None
        assert result.id == ""
        in_tx = default_task_backend.bridge.app.stats()["queues"].get(HELD, {})
        assert in_tx.get("queued", 0) == before  # nothing written yet
    assert result.id != ""
    assert result.enqueued_at is not None
    assert default_task_backend.get_result(result.id).status == TaskResultStatus.READY


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_enqueues_nothing() -> None:
    t = held(test_tasks.noop_task).using(enqueue_on_commit=True)
    before = default_task_backend.bridge.app.stats()["queues"].get(HELD, {}).get("queued", 0)
    with pytest.raises(RuntimeError), transaction.atomic():
        result = t.enqueue()
        raise RuntimeError("roll back")
    assert result.id == ""
    after = default_task_backend.bridge.app.stats()["queues"].get(HELD, {}).get("queued", 0)
    assert after == before


def test_deferred_run_after() -> None:
    """supports_defer (Django's DummyBackend keeps run_after; ImmediateBackend refuses it)."""
    run_after = timezone.now() + timedelta(seconds=1)
    result = test_tasks.calculate_meaning_of_life.using(run_after=run_after).enqueue()
    assert result.status == TaskResultStatus.READY
    assert result.task.run_after == run_after
    finished(result)
    assert result.return_value == 42
    assert result.started_at >= run_after
