"""What LitejobsBackend adds to Django's contract, against a real supervisor: the job's
attempts in the TaskResult, the signals and connections in the worker, litejobs' task
options, and a worker that runs only tasks it discovered."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.tasks import TaskResultStatus, default_task_backend, task
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist

from litejobs.contrib.django import LitejobsTask, app_for
from tests import ported_tasks as t
from tests.conftest import HERE, finished, manage, wait_for

pytestmark = pytest.mark.usefixtures("supervisor")


def test_retries_give_one_worker_id_per_attempt_and_one_error_per_failure() -> None:
    result = finished(t.fail_until.enqueue(3), timeout=60)
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    # what the task's TaskContext saw on its third attempt
    assert result.return_value == {"attempt": 3, "workers": 3, "errors": 2}
    assert result.attempts == 3
    assert len(result.worker_ids) == 3
    assert all(w.startswith(os.uname().nodename) for w in result.worker_ids), result.worker_ids
    assert [e.exception_class for e in result.errors] == [RuntimeError, RuntimeError]
    assert "attempt 1 fails" in result.errors[0].traceback
    assert result.last_attempted_at > result.started_at >= result.enqueued_at
    assert result.finished_at >= result.last_attempted_at


def test_running_then_successful(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    result = t.wait_for_file.enqueue(str(gate))
    wait_for(lambda: result.refresh() or result.status == TaskResultStatus.RUNNING, 30,
             "the job to be RUNNING")
    assert result.started_at is not None and result.finished_at is None
    assert len(result.worker_ids) == 1
    gate.touch()
    assert finished(result).status == TaskResultStatus.SUCCESSFUL


def test_cancelled_is_failed_with_a_task_error() -> None:
    result = t.noop_task.using(queue_name="held").enqueue()
    assert app_for().get_job(int(result.id)).cancel()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "litejobs.errors.JobCancelled"
    assert result.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_timeout_is_failed_with_job_timeout() -> None:
    result = finished(t.overrun.enqueue(30))
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "litejobs.errors.JobTimeout"
    from litejobs.errors import JobTimeout

    assert result.errors[0].exception_class is JobTimeout


def test_signals_are_sent_in_the_worker() -> None:
    result = finished(t.calculate_meaning_of_life.enqueue())
    log = Path(settings.DATA_DIR) / "signals.log"
    lines = wait_for(lambda: [line.split() for line in log.read_text().splitlines()
                              if line.split()[1] == result.id and line.startswith("finished")]
                     and [line.split() for line in log.read_text().splitlines()
                          if line.split()[1] == result.id], 10, "the signals' lines")
    assert [(kind, status) for kind, _, status, _, _ in lines] == [
        ("started", "RUNNING"), ("finished", "SUCCESSFUL")]
    assert {pid for _, _, _, pid, _ in lines} != {str(os.getpid())}  # a worker sent them
    assert {sender for *_, sender in lines} == {"LitejobsBackend"}


def test_failed_attempt_sends_finished_failed() -> None:
    result = finished(t.failing_task_value_error.enqueue())
    log = Path(settings.DATA_DIR) / "signals.log"
    lines = wait_for(lambda: [line for line in log.read_text().splitlines()
                              if line.split()[1] == result.id and line.startswith("finished")],
                     10, "the finished signal")
    assert lines[0].split()[2] == "FAILED"


def test_each_job_gets_a_fresh_database_connection() -> None:
    """close_old_connections around each job (CONN_MAX_AGE=0): a worker opens a new
    connection for every job that queries, as Django does for every request."""
    seen: dict[int, list[int]] = {}
    for _ in range(6):
        pid, made = finished(t.connections_made.enqueue()).return_value
        seen.setdefault(pid, []).append(made)
    assert any(len(counts) > 1 for counts in seen.values()), seen
    for counts in seen.values():
        assert counts == sorted(set(counts)), seen  # one more connection every job


def test_litejobs_options_reach_the_job() -> None:
    assert isinstance(t.fail_until, LitejobsTask)
    result = t.noop_task.using(queue_name="held", priority=7).using(
        key="order-42", tags=["billing"], retries=4, timeout=12).enqueue()
    again = t.noop_task.using(queue_name="held", key="order-42").enqueue()
    assert again.id == result.id  # the same key: the same job
    job = app_for().get_job(int(result.id))
    assert (job.priority, job.key, job.tags, job.queue) == (7, "order-42", ["billing"], "held")
    row = job.to_dict()
    assert (row["max_attempts"], row["timeout"]) == (5, 12)
    rebuilt = default_task_backend.get_result(result.id)
    assert (rebuilt.task.priority, rebuilt.task.key, rebuilt.task.retries) == (7, "order-42", 4)


def test_bad_litejobs_options_are_invalid_tasks() -> None:
    with pytest.raises(InvalidTask, match="retries"):
        task(retries=-1)(t.calculate_meaning_of_life.func)
    with pytest.raises(InvalidTask, match="rate_limit"):
        task(rate_limit="lots")(t.calculate_meaning_of_life.func)
    with pytest.raises(TypeError, match="unknown task option"):
        t.noop_task.using(retry=3)


def test_argument_checked_at_enqueue() -> None:
    with pytest.raises(TypeError, match="calculate_meaning_of_life"):
        t.calculate_meaning_of_life.enqueue(1, 2)  # takes none: refused, nothing written


def test_worker_runs_only_discovered_tasks() -> None:
    """A job naming a module no tasks module imports fails: the worker never imports a
    module named by the database."""
    job = app_for().enqueue("os.system", ["true"])
    wait_for(lambda: job.refresh().state.value == "failed", 30, "the job to fail")
    assert "unknown task 'os.system'" in (job.error or "")
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        default_task_backend.get_result(str(job.id))


def test_manage_py_litejobs_runs_any_command() -> None:
    result = t.noop_task.using(queue_name="held").enqueue(5)
    shown = manage("litejobs", "show", result.id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"tests.ported_tasks.noop_task"' in shown.stdout
    bad = manage("litejobs", "show", "987654321")
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == ["Error: no job with id 987654321 (never "
                                               "enqueued, or pruned after retention)"]
    listed = manage("litejobs", "cron", "list")
    assert "daily-report" in listed.stdout and "shop.tasks.daily_report" in listed.stdout


def test_the_command_refuses_a_backend_that_is_not_litejobs() -> None:
    done = subprocess.run([sys.executable, "manage.py", "litejobs", "--backend", "immediate",
                           "check"], cwd=HERE, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0
    assert "not a litejobs backend" in done.stderr, done.stderr


def test_naive_run_after_without_use_tz() -> None:
    """USE_TZ = False: Django's run_after is naive, in TIME_ZONE; litejobs stores UTC."""
    from datetime import datetime, timedelta

    from django.test import override_settings
    from django.utils import timezone

    with override_settings(USE_TZ=False):
        run_after = datetime.now() + timedelta(seconds=1)
        result = t.calculate_meaning_of_life.using(run_after=run_after).enqueue()
    job = app_for().get_job(int(result.id))
    assert abs(job.run_at - timezone.make_aware(run_after)) < timedelta(milliseconds=1)
    assert finished(result).return_value == 42
    assert result.started_at >= timezone.make_aware(run_after)


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_option_of_the_backend() -> None:
    from django.db import transaction
    from django.test import override_settings

    default = settings.TASKS["default"]
    tasks = {**settings.TASKS, "default": {
        **default, "OPTIONS": {**default["OPTIONS"], "enqueue_on_commit": True}}}
    with override_settings(TASKS=tasks):
        with transaction.atomic():
            result = t.noop_task.using(queue_name="held").enqueue()
            assert (result.id, result.enqueued_at) == ("", None)
        assert result.id and result.enqueued_at is not None
        # a task's own enqueue_on_commit=False wins over the backend's
        with transaction.atomic():
            now = t.noop_task.using(queue_name="held", enqueue_on_commit=False).enqueue()
            assert now.id


def test_system_check_warns_without_the_app() -> None:
    from django.test import override_settings

    assert default_task_backend.check() == []
    apps = [a for a in settings.INSTALLED_APPS if a != "litejobs.contrib.django"]
    with override_settings(INSTALLED_APPS=apps):
        (warning,) = default_task_backend.check()
    assert warning.id == "litejobs.W001"
    assert "INSTALLED_APPS" in warning.msg
