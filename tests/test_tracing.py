"""OpenTelemetry (issue 13, item 6): an "enqueue TASK" span in the producer, a "run TASK" span
in the worker as its child, linked by the traceparent stored with the job.

The producers are processes of their own (tracing is decided once per process, at its first
enqueue); the app module sets up an SDK provider writing spans to a JSON-lines file, in the
producer and in the supervisor's workers alike.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, clean_env, launch_supervisor, wait_for

pytest.importorskip("opentelemetry.sdk")

APP = "tests.apps.traceapp:app"

TRACED = """
import sys
from opentelemetry import trace
from tests.apps import traceapp
app = traceapp.make_app(sys.argv[1])
with trace.get_tracer("test").start_as_current_span("request"):
    a = app.tasks["trace.ok"].enqueue(1)
    b = app.tasks["trace.fails"].enqueue()
print(a.id, b.id)
"""
# opentelemetry imported, no provider set: not in use
UNSET = """
import sys
from tests.apps import traceapp
app = traceapp.make_app(sys.argv[1])
print(app.tasks["trace.ok"].enqueue(2).id)
"""
# opentelemetry never imported: it must stay so
ABSENT = """
import sys
import litejobs
job = litejobs.App(sys.argv[1]).enqueue("trace.ok", [3])
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
print(job.id)
"""


def produce(script: str, db: Path, **env: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", script, str(db)], cwd=REPO,
                         env=clean_env(db, **env), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [int(x) for x in out.stdout.split()]


def spans(db: Path) -> list[dict[str, Any]]:
    path = Path(f"{db}.spans")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True)
            if line.endswith("\n")]


def stored_trace(db: Path, job_id: int) -> str | None:
    conn = sqlite3.connect(db)
    try:
        (value,) = conn.execute("SELECT trace FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    return value  # type: ignore[no-any-return]


def test_the_run_span_is_a_child_of_the_enqueue_span(tmp_path: Path, db_path: Path) -> None:
    ok_id, _ = produce(TRACED, db_path)
    (unset_id,) = produce(UNSET, db_path, LITEJOBS_TEST_NO_TRACING="1")
    (absent_id,) = produce(ABSENT, db_path, LITEJOBS_TEST_NO_TRACING="1")
    produced = spans(db_path)
    by_name = {s["name"]: s for s in produced}
    request, enqueue_ok = by_name["request"], by_name["enqueue trace.ok"]
    enqueue_fails = by_name["enqueue trace.fails"]
    assert len(produced) == 3, produced  # nothing from the producers without a provider
    assert enqueue_ok["parent"] == request["span_id"] == enqueue_fails["parent"]
    assert enqueue_ok["kind"] == "PRODUCER"
    traceparent = stored_trace(db_path, ok_id)
    assert traceparent is not None
    version, trace_id, parent_id, flags = traceparent.split("-")
    assert (version, trace_id, parent_id) == ("00", request["trace_id"], enqueue_ok["span_id"])
    assert int(flags, 16) & 1  # sampled
    assert stored_trace(db_path, unset_id) is None
    assert stored_trace(db_path, absent_id) is None

    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f'app = "{APP}"\n')
    sup = launch_supervisor([sys.executable, "-m", "litejobs", "run", "--app", APP,
                             "--workers", "2", "--config", str(cfg)], REPO, db_path,
                            tmp_path / "supervisor.log")
    conn = sqlite3.connect(db_path)
    try:
        wait_for(lambda: conn.execute("SELECT count(*) FROM jobs WHERE state IN "
                                      "('succeeded', 'failed')").fetchone()[0] == 4, 30,
                 "every job to end", details=sup.output)
    finally:
        conn.close()
    runs = [s for s in spans(db_path) if s["name"].startswith("run ")]
    assert sorted(s["name"] for s in runs) == ["run trace.fails", "run trace.ok"], runs
    (run_ok,) = [s for s in runs if s["name"] == "run trace.ok"]
    (run_fails,) = [s for s in runs if s["name"] == "run trace.fails"]
    assert run_ok["parent"] == enqueue_ok["span_id"]
    assert run_ok["trace_id"] == enqueue_ok["trace_id"] == request["trace_id"]
    assert run_ok["pid"] != enqueue_ok["pid"]  # made by a worker
    assert run_ok["kind"] == "CONSUMER" and run_ok["status"] == "UNSET"
    assert run_ok["attributes"] == {"litejobs.job_id": ok_id, "litejobs.task": "trace.ok",
                                    "litejobs.queue": "default", "litejobs.attempt": 1}
    assert run_fails["parent"] == enqueue_fails["span_id"]
    assert run_fails["status"] == "ERROR" and "exception" in run_fails["events"]
