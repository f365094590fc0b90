"""Tags, progress and metadata (issue 12, items 5 and 6): tags stored with the job and found
by ``app.jobs(tag=...)`` and ``litejobs jobs --tag``; a task's progress and metadata travel
to the supervisor (workers never open the file), are written fenced by attempt, and are seen
by ``job.follow``; bad values refused with one clear error. Each test of a database runs on
both stores (the ``database`` fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import litejobs
from litejobs import protocol
from litejobs.cli import main
from litejobs.job import State
from litejobs.store import QueueLimits
from litejobs.testing import run_until_idle
from tests.conftest import REPO, clean_env


def _app(database: str) -> tuple[litejobs.App, litejobs.Task[[int], int]]:
    app = litejobs.App(database)

    @app.task
    def add(x: int) -> int:
        return x + 1

    return app, add


def test_tags_round_trip_and_filter_jobs_newest_first(database: str) -> None:
    app, add = _app(database)
    a = add.options(tags=["user:7", "import"]).enqueue(1)
    b = add.enqueue(2)
    c = add.options(tags=["import", "import"]).enqueue(3)  # a repeated tag is kept once
    assert a.tags == ["user:7", "import"] and b.tags == [] and c.tags == ["import"]
    assert app.get_job(a.id).tags == ["user:7", "import"]  # type: ignore[union-attr]
    assert [j.id for j in app.jobs(tag="import")] == [c.id, a.id]
    assert [j.id for j in app.jobs(tag="user:7")] == [a.id]
    assert app.jobs(tag="nobody") == []
    assert [j.id for j in app.jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in app.jobs(tag="import", limit=1)] == [c.id]
    assert [j.id for j in app.jobs(state="queued", task=add.name, queue="default",
                                   tag="import")] == [c.id, a.id]
    assert app.jobs(state="succeeded", tag="import") == []
    # no workflow exists yet, so none has jobs
    assert app.jobs(workflow="w1") == []
    with pytest.raises(ValueError, match="state must be one of"):
        app.jobs(state="done")


def test_enqueue_many_mixes_tagged_calls_with_a_bulk_run(database: str) -> None:
    app, add = _app(database)
    calls = [add.prepare(i) for i in range(20)]
    calls.insert(10, add.options(tags=["mid"]).prepare(99))
    jobs = app.enqueue_many(calls)
    assert [j.args for j in jobs] == [list(c.args) for c in calls]
    assert [j.id for j in app.jobs(tag="mid")] == [jobs[10].id]
    assert jobs[10].tags == ["mid"] and jobs[11].tags == []
    assert len(app.jobs(limit=100)) == 21


def test_a_tasks_tags_go_on_every_job_unless_a_call_gives_its_own(database: str) -> None:
    app = litejobs.App(database)

    @app.task(tags=["nightly"])
    def report(n: int) -> int:
        return n

    one = report.enqueue(1)
    many = app.enqueue_many([report.prepare(i) for i in range(20)])  # not the bulk path
    own = report.options(tags=["adhoc"]).enqueue(2)
    assert one.tags == ["nightly"] and all(j.tags == ["nightly"] for j in many)
    assert own.tags == ["adhoc"]
    assert len(app.jobs(tag="nightly", limit=100)) == 21
    assert [j.id for j in app.jobs(tag="adhoc")] == [own.id]
    with pytest.raises(ValueError, match="at most 16 tags"):
        app.task(tags=[str(i) for i in range(17)])


@pytest.mark.parametrize(("tags", "message"), [
    ("import", "tags must be a list of strings"),
    ([""], "tag '' is not usable"),
    (["x" * 65], "1 to 64 characters"),
    (["a\nb"], "without control characters"),
    ([7], "tag 7 is not usable"),
    ([f"t{i}" for i in range(17)], "at most 16 tags, not 17"),
])
def test_bad_tags_are_refused_at_the_door(database: str, tags: object, message: str) -> None:
    app, add = _app(database)
    with pytest.raises(ValueError, match=message):
        add.options(tags=tags).enqueue(1)  # type: ignore[arg-type]
    assert app.jobs() == []


def test_cli_jobs_filters_by_tag_and_json_has_tags_progress_metadata(database: str) -> None:
    _, add = _app(database)
    a = add.options(tags=["blue"]).enqueue(1)
    add.enqueue(2)
    db = database
    runner = CliRunner()
    res = runner.invoke(main, ["jobs", "--database", db, "--tag", "blue", "--json"])
    assert res.exit_code == 0, res.output
    (item,) = json.loads(res.stdout)
    assert item["id"] == a.id and item["tags"] == ["blue"]
    assert item["progress"] is None and item["metadata"] == {}
    res = runner.invoke(main, ["show", "--database", db, str(a.id), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["tags"] == ["blue"] and data["progress"] is None and data["metadata"] == {}
    res = runner.invoke(main, ["jobs", "--database", db, "--tag", "green"])
    assert res.exit_code == 0 and "no jobs" in res.stdout
    res = runner.invoke(main, ["jobs", "--database", db, "--workflow", "w1", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == []


# --- progress and metadata ----------------------------------------------------------------------

PROGRESS_APP = '''
import os, time
import litejobs
app = litejobs.App(os.environ["LITEJOBS_TEST_DB"])

@app.task
def crunch(steps: int) -> int:
    ctx = litejobs.current_job()
    for i in range(1, steps + 1):
        time.sleep(0.15)
        ctx.set_progress(i / steps, f"{i} of {steps}")
        ctx.set_metadata(done=i)
    ctx.set_metadata(rows=1200, source={"name": "a.csv"})
    return steps
'''


def test_a_running_job_reports_progress_and_metadata_that_follow_sees(
        tmp_path: Path, database: str) -> None:
    db = database
    (tmp_path / "progressapp.py").write_text(PROGRESS_APP)
    job = litejobs.App(db).enqueue("progressapp.crunch", args=[10])
    env = clean_env(db, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    proc = subprocess.Popen([sys.executable, "-m", "litejobs", "run", "--app", "progressapp:app",
                             "--workers", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen = list(job.follow(timeout=30))
    finally:
        proc.terminate()
        proc.wait(30)
    last = seen[-1]
    assert last.state is State.SUCCEEDED and last.result() == 10
    fractions = [j.progress[0] for j in seen if j.progress is not None]
    assert len(set(fractions)) >= 3, fractions  # seen moving while it ran, not only at the end
    assert fractions == sorted(fractions)
    assert last.progress == (1.0, "10 of 10")
    assert last.metadata == {"done": 10, "rows": 1200, "source": {"name": "a.csv"}}
    running = [j for j in seen if j.state is State.RUNNING and j.progress is not None]
    assert running, "no progress was written while the job ran"


def test_run_until_idle_records_progress_and_metadata(database: str) -> None:
    app = litejobs.App(database)

    @app.task
    def work() -> None:
        ctx = litejobs.current_job()
        for i in range(100):
            ctx.set_progress(i / 99)
        ctx.set_metadata(a=1)
        ctx.set_metadata(b=[1, 2])

    job = work.enqueue()
    assert run_until_idle(app).succeeded == 1
    job.refresh()
    assert job.progress == (1.0, None)
    assert job.metadata == {"a": 1, "b": [1, 2]}
    assert job.to_dict()["progress"] == {"fraction": 1.0, "message": None}


@pytest.mark.parametrize(("call", "message"), [
    (lambda c: c.set_progress(1.5), "fraction must be a number from 0 to 1"),
    (lambda c: c.set_progress(float("nan")), "fraction must be a number from 0 to 1"),
    (lambda c: c.set_progress(True), "fraction must be a number from 0 to 1"),
    (lambda c: c.set_progress(0.5, "x" * 201), "message must be a string of at most 200"),
    (lambda c: c.set_metadata(when=object()), "set_metadata: values must be JSON"),
    (lambda c: c.set_metadata(blob="x" * 70_000), "over the limit of 65536"),
])
def test_bad_progress_and_metadata_fail_the_task_with_a_clear_error(
        database: str, call: Any, message: str) -> None:
    app = litejobs.App(database)

    @app.task(retries=0)
    def work() -> None:
        call(litejobs.current_job())

    job = work.enqueue()
    assert run_until_idle(app).failed == 1
    assert message in (job.refresh().error or "")
    assert job.progress is None and job.metadata == {}


def test_a_stale_attempts_progress_is_not_written(database: str) -> None:
    app = litejobs.App(database)
    store = app.store
    job = app.enqueue("t.work")
    (row,) = store.write(lambda tx: tx.claim(["s:1:w"], [QueueLimits("default")], time.time(),
                                             30.0))
    attempt = int(row["attempt"])
    assert store.write(lambda tx: tx.set_progress_many([
        (job.id, attempt, 0.5, "half", '{"a":1}')])) == 1
    assert job.refresh().progress == (0.5, "half") and job.metadata == {"a": 1}
    # an older attempt's report, and metadata alone (progress kept), merged as a patch
    assert store.write(lambda tx: tx.set_progress_many([
        (job.id, attempt - 1, 0.9, "old", '{"a":2}')])) == 0
    assert store.write(lambda tx: tx.set_progress_many([
        (job.id, attempt, None, None, '{"b":{"c":1}}')])) == 1
    assert job.refresh().progress == (0.5, "half")
    assert job.metadata == {"a": 1, "b": {"c": 1}}
    # once the attempt ended, a late report is dropped
    assert store.write(lambda tx: tx.succeed(job.id, attempt, "null", "s:1:w", time.time(),
                                             time.time()))
    assert store.write(lambda tx: tx.set_progress_many([
        (job.id, attempt, 0.7, "late", None)])) == 0
    assert job.refresh().progress == (0.5, "half")


def test_the_progress_frame_round_trips_and_bad_ones_are_protocol_errors() -> None:
    frame = protocol.progress(5, 2, 0.25, "a\nb", '{"k":[1,"\\u00e9"]}')
    assert protocol.decode_report(frame[4:]) == {
        "id": 5, "attempt": 2, "progress": (0.25, "a\nb", '{"k":[1,"\\u00e9"]}')}
    assert protocol.Reader().feed(frame) == [frame[4:]]
    for body in (b"P" + b"\0" * 16 + b"[2, null, null]", b"P" + b"\0" * 16 + b"[NaN,null,null]",
                 b"P" + b"\0" * 16 + b"[0.5, 7, null]", b"P" + b"\0" * 16 + b"[0.5, null, []]",
                 b"P\0\0", b"P" + b"\0" * 16 + b"{"):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode_report(body)
