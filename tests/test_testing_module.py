"""litejobs.testing, Oban-grade: a Clock that drives every time litejobs reads, run_until_idle
through the worker's code, assertions on what was enqueued, inline mode, the pytest plugin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs.testing import (
    Clock,
    assert_enqueued,
    enqueued_jobs,
    inline,
    refute_enqueued,
    run_until_idle,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2030, 1, 1, 10, 30, tzinfo=UTC).timestamp()


def readme_testing_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Testing your tasks", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README's 'Testing your tasks' has no python example"
    return match.group(1)


def test_the_readme_example_passes_as_written_on_a_fresh_database(tmp_path: Path) -> None:
    # It failed before: Clock() stood still at its creation while the enqueue a moment later
    # read the real time, so the job was due a moment after clock + 3600.
    app = litejobs.App(tmp_path / "fresh.db")
    sent: list[str] = []

    @app.task
    def send_reminder(name: str) -> None:
        sent.append(name)

    exec(readme_testing_snippet(), {"app": app, "send_reminder": send_reminder})
    assert sent == ["ada"]


def make(tmp_path: Path) -> tuple[litejobs.App, dict[str, Any]]:
    app = litejobs.App(tmp_path / "t.db")

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="t.flaky", retries=2, retry_on=(ConnectionError,),
              backoff=litejobs.Backoff(base=100, factor=1, jitter=False))
    def flaky(kind: str) -> str:
        if kind == "value":
            raise ValueError("not retried")
        if litejobs.current_job().attempt < 3:
            raise ConnectionError("try later")
        return "ok"

    return app, {"add": add, "flaky": flaky}


def test_the_clock_drives_enqueue_times(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    Clock(T0).attach(app)
    job = t["add"].enqueue(1, 2)
    assert job.created_at.timestamp() == T0 == job.run_at.timestamp()
    later = t["add"].options(delay=90).enqueue(1, 2)
    assert later.run_at.timestamp() == T0 + 90
    [a, b] = app.enqueue_many([t["add"].prepare(i, i) for i in range(2)])
    assert a.created_at.timestamp() == T0 == b.run_at.timestamp()


def test_back_off_and_the_retry_rule_are_the_workers(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    clock = Clock(T0)
    retried = t["flaky"].enqueue("conn")
    final = t["flaky"].enqueue("value")  # not in retry_on: fails at once
    first = run_until_idle(app, clock=clock)
    assert (first.succeeded, first.failed, first.retried) == (0, 2, 1)
    assert final.refresh().state is litejobs.State.FAILED
    assert retried.refresh().state is litejobs.State.SCHEDULED
    assert retried.run_at.timestamp() == T0 + 100  # back-off counted on the clock
    clock.advance(99.5)
    assert run_until_idle(app, clock=clock) == type(first)()  # not due yet
    clock.advance(0.5)
    assert run_until_idle(app, clock=clock).retried == 1
    clock.advance(100)
    assert run_until_idle(app, clock=clock).succeeded == 1
    assert retried.result(timeout=0) == "ok"
    assert [a.outcome for a in retried.attempts()] == ["failed", "failed", "succeeded"]


def test_expiry_is_counted_on_the_clock(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    clock = Clock(T0).attach(app)
    job = t["add"].options(delay=10, expires=5).enqueue(1, 1)
    clock.advance(16)
    assert run_until_idle(app, clock=clock).succeeded == 0
    assert job.refresh().state is litejobs.State.CANCELLED


def test_cron_fires_on_the_clock(tmp_path: Path) -> None:
    app, _ = make(tmp_path)
    ran: list[str] = []

    @app.cron("0 * * * *", name="hourly")
    def hourly() -> None:
        ran.append(litejobs.current_job().scheduled_at.isoformat())

    clock = Clock(T0)  # 10:30
    assert run_until_idle(app, clock=clock).succeeded == 0  # a new entry owes nothing
    clock.advance(29 * 60)
    assert run_until_idle(app, clock=clock).succeeded == 0
    clock.advance(60)  # 11:00
    assert run_until_idle(app, clock=clock).succeeded == 1
    clock.advance(3 * 3600)  # missed 12:00, 13:00, 14:00: misfire "latest" fires 14:00 once
    assert run_until_idle(app, clock=clock).succeeded == 1
    assert ran == ["2030-01-01T11:00:00+00:00", "2030-01-01T14:00:00+00:00"]


def test_a_clock_follows_the_real_time_until_moved() -> None:
    clock = Clock()
    before = clock()
    assert clock.frozen is None
    moved = clock.advance(60)
    assert moved >= before + 60 and clock() == moved == clock()
    with pytest.raises(ValueError, match="timezone-aware"):
        Clock(datetime(2030, 1, 1))


def test_assert_and_refute_enqueued(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    t["add"].enqueue(1, 2)
    t["add"].enqueue(1, 2)
    t["add"].enqueue(a=3, b=4)
    t["add"].options(delay=60).enqueue(5, 6)
    assert len(assert_enqueued(t["add"], args=(1, 2), count=2)) == 2
    assert_enqueued(t["add"], kwargs={"b": 4})
    assert_enqueued("t.add", args=[5, 6], app=app)  # scheduled counts as enqueued
    assert_enqueued(t["add"], count=4)
    refute_enqueued(t["add"], args=[9, 9])
    refute_enqueued(t["flaky"])
    assert [j.args for j in enqueued_jobs(t["add"])] == [[1, 2], [1, 2], [], [5, 6]]
    with pytest.raises(AssertionError) as info:
        assert_enqueued(t["add"], args=[1, 3])
    message = str(info.value)
    assert message.startswith("expected a job of task 't.add' with args=[1, 3] enqueued, "
                              "found 0; enqueued jobs of task 't.add' (4):")
    assert "\n  #1 queued args=[1, 2] kwargs={}" in message
    assert "scheduled args=[5, 6]" in message
    with pytest.raises(AssertionError, match=r"expected 1 job of task 't.add' with "
                                             r"args=\[1, 2\] enqueued, found 2"):
        assert_enqueued(t["add"], args=[1, 2], count=1)
    with pytest.raises(AssertionError, match=r"expected no job of task 't.add' with "
                                             r"kwargs including \{'a': 3\} enqueued, found 1"):
        refute_enqueued(t["add"], kwargs={"a": 3})
    with pytest.raises(AssertionError, match=r"no job of task 't\.flaky' is enqueued"):
        assert_enqueued(t["flaky"])
    run_until_idle(app)
    refute_enqueued(t["add"], args=[1, 2])  # ran: no longer enqueued
    assert_enqueued(t["add"], args=[5, 6], count=1)


def test_inline_runs_each_job_at_enqueue_in_the_callers_thread(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "i.db")
    threads: list[int] = []

    @app.task(name="i.double")
    def double(x: int) -> int:
        threads.append(threading.get_ident())
        return 2 * x

    @app.task(name="i.fanout")
    def fanout(n: int) -> list[int]:
        return [double.enqueue(i).result(timeout=0) for i in range(n)]

    @app.task(name="i.broken", retries=0)
    def broken() -> None:
        raise RuntimeError("boom")

    with inline(app):
        job = double.enqueue(21)
        assert job.state is litejobs.State.SUCCEEDED and job.result(timeout=0) == 42
        assert fanout.enqueue(3).result(timeout=0) == [0, 2, 4]  # nested enqueues ran too
        assert app.enqueue("i.double", args=[5]).result(timeout=0) == 10
        assert [j.result(timeout=0) for j in app.enqueue_many(
            [double.prepare(i) for i in range(3)])] == [0, 2, 4]
        failed = broken.enqueue()
        assert failed.state is litejobs.State.FAILED
        with pytest.raises(litejobs.JobFailed, match="boom"):
            failed.result(timeout=0)
        later = double.options(delay=60).enqueue(1)
        assert later.state is litejobs.State.SCHEDULED  # due later: left for run_until_idle
    assert set(threads) == {threading.get_ident()}
    after = double.enqueue(1)  # outside: enqueued as usual
    assert after.refresh().state is litejobs.State.QUEUED


def test_run_until_idle_runs_async_tasks(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "a.db")

    @app.task(name="a.twice")
    async def twice(x: int) -> int:
        import asyncio

        await asyncio.sleep(0)
        return 2 * x

    job = twice.enqueue(4)
    assert run_until_idle(app).succeeded == 1
    assert job.result(timeout=0) == 8


PLUGIN_TEST = """
import sys

HEAVY = ("apsw", "croniter", "click", "starlette", "jinja2", "httpx", "opentelemetry")


def test_plugin_loading_imported_nothing_heavy():
    assert [m for m in HEAVY if m in sys.modules] == [], sorted(sys.modules)


def test_a_fresh_database(litejobs_app, litejobs_clock, tmp_path):
    from litejobs.testing import assert_enqueued, run_until_idle

    assert litejobs_app.path == str(tmp_path / "litejobs.db")
    assert litejobs_app.stats()["states"]["queued"] == 0

    @litejobs_app.task(name="p.add")
    def add(a, b):
        return a + b

    job = add.options(delay=10).enqueue(1, 2)
    assert_enqueued(add, args=[1, 2])
    litejobs_clock.advance(10)
    assert run_until_idle(litejobs_app, clock=litejobs_clock).succeeded == 1
    assert job.result(timeout=0) == 3


def test_each_test_gets_its_own(litejobs_app):
    assert litejobs_app.stats()["states"]["succeeded"] == 0
"""


def test_the_pytest_plugin_in_a_real_pytest_run(tmp_path: Path) -> None:
    # the first test sees sys.modules as the plugin left them (pytest runs tests in order;
    # the file imports litejobs only inside the later tests)
    (tmp_path / "test_uses_plugin.py").write_text(textwrap.dedent(PLUGIN_TEST))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "test_uses_plugin.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def docs_blocks() -> dict[str, str]:
    """docs/testing.md's python examples that run: by file name (its first line's comment),
    the plugin example as test_plugin_example.py."""
    text = (ROOT / "docs" / "testing.md").read_text()
    out: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        first = block.splitlines()[0]
        if first in ("# myapp.py", "# test_myapp.py"):
            out[first[2:]] = block
        elif "litejobs_app" in block:
            out["test_plugin_example.py"] = block
    return out


def run_pytest_on(tmp_path: Path, files: dict[str, str], passed: int) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *sorted(n for n in files if n.startswith("test_"))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{passed} passed" in done.stdout


def test_the_docs_pytest_example_runs(tmp_path: Path) -> None:
    blocks = docs_blocks()
    run_pytest_on(tmp_path, {"test_plugin_example.py": blocks["test_plugin_example.py"]}, 1)


def test_the_docs_flask_example_runs(tmp_path: Path) -> None:
    pytest.importorskip("flask", reason="Flask is not installed (the examples bring it)")
    blocks = docs_blocks()
    run_pytest_on(tmp_path, {n: blocks[n] for n in ("myapp.py", "test_myapp.py")}, 2)


def test_inline_ends_cleanly_on_an_error_and_nests(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    with pytest.raises(RuntimeError, match="in the test"), inline(app):
        with inline(app):
            assert t["add"].enqueue(1, 1).result(timeout=0) == 2
        assert t["add"].enqueue(2, 2).result(timeout=0) == 4  # the outer one goes on
        raise RuntimeError("in the test")
    assert "enqueue_one" not in vars(app) and "enqueue_many" not in vars(app)
    assert t["add"].enqueue(3, 3).refresh().state is litejobs.State.QUEUED


def test_debounce_is_counted_on_the_clock(tmp_path: Path) -> None:
    app, t = make(tmp_path)
    clock = Clock(T0).attach(app)
    first = t["add"].options(key="k", debounce=30).enqueue(1, 1)
    clock.advance(20)
    again = t["add"].options(key="k", debounce=30).enqueue(2, 2)
    assert again.id == first.id and again.run_at.timestamp() == T0 + 50
    clock.advance(29)
    assert run_until_idle(app, clock=clock).succeeded == 0
    clock.advance(1)
    assert run_until_idle(app, clock=clock).succeeded == 1
    assert first.result(timeout=0) == 4


def test_a_stored_schedule_counts_from_the_clock(tmp_path: Path) -> None:
    # Stored at 10:30 on the clock (years from the real time): it owes nothing from before,
    # so its first fire is 11:00, not an instant between the real time and the clock's.
    app, _ = make(tmp_path)
    ran: list[str] = []

    @app.task(name="report")
    def report() -> None:
        ran.append(litejobs.current_job().scheduled_at.isoformat())

    clock = Clock(T0).attach(app)
    app.schedule("hourly", "0 * * * *", "report")
    assert run_until_idle(app, clock=clock).succeeded == 0
    clock.advance(30 * 60)
    assert run_until_idle(app, clock=clock).succeeded == 1
    assert ran == ["2030-01-01T11:00:00+00:00"]


def test_retry_and_tokens_read_the_clock(tmp_path: Path) -> None:
    # A clock behind the real time: a retried job is due on the clock, a token's timeout
    # counts from the clock, not from the real time.
    app, t = make(tmp_path)
    clock = Clock(datetime(2020, 1, 1, tzinfo=UTC)).attach(app)
    job = t["add"].options(retries=0).enqueue(1, "x")  # fails: int + str
    assert run_until_idle(app, clock=clock).failed == 1
    assert job.refresh().state is litejobs.State.FAILED
    assert job.retry(retries=0)
    clock.advance(1)
    assert run_until_idle(app, clock=clock).failed == 1  # due on the clock: ran again
    token = app.create_token(timeout=60)
    clock.advance(61)
    run_until_idle(app, clock=clock)
    with pytest.raises(ValueError, match="token"):
        app.complete_token(token, "late")
