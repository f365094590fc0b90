"""A real supervisor (`python manage.py litejobs run`) for the whole session, on the files
of a temporary directory (``LITEJOBS_EXAMPLE_DATA``, set before the settings load)."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent.parent  # examples/django, where manage.py is


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             details: Callable[[], str] = lambda: "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{details()}")
        time.sleep(0.02)


def finished(result: Any, timeout: float = 30.0) -> Any:
    """Wait until a TaskResult is finished (refreshing it); return it."""

    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(done, timeout, f"job {result.id} ({result.task.module_path}) to finish",
             lambda: f"last status {result.status}\n{supervisor_log()}")
    return result


def manage(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python manage.py ARGS` with this session's settings and files."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=HERE, check=False,
                          env=dict(os.environ), capture_output=True, text=True,
                          timeout=timeout)


def supervisor_log() -> str:
    path = Path(os.environ["LITEJOBS_EXAMPLE_DATA"]) / "supervisor.log"
    return path.read_text() if path.exists() else "(no supervisor log)"


@pytest.fixture(scope="session")
def supervisor(django_db_setup: None, django_db_blocker: Any) -> Iterator[subprocess.Popen[str]]:
    """`python manage.py litejobs run --workers 2` on the test database, for the session;
    the "held" queue is paused first, so its jobs stay READY. Drained with SIGTERM at the
    end, and its exit status checked."""
    from litejobs.contrib.django import app_for

    app_for().pause_queue("held")
    log = open(Path(os.environ["LITEJOBS_EXAMPLE_DATA"]) / "supervisor.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "manage.py", "litejobs", "run", "--workers", "2"],
                            cwd=HERE, env=dict(os.environ), stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        from tests.ported_tasks import calculate_meaning_of_life

        with django_db_blocker.unblock():
            probe = finished(calculate_meaning_of_life.enqueue(), timeout=60)
        assert probe.return_value == 42, supervisor_log()
        yield proc
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=40)
        assert code == 0, f"the supervisor exited {code}\n{supervisor_log()}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
