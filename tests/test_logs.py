"""The supervisor's log (issue 13, item 1): one line per job outcome, a task's own logging
records with their job, text and json lines, the level, and the bound on a flood.

Real `litejobs run` processes on a real file; the lines are read from the supervisor's
output (its stderr, which its workers share).
"""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litejobs import logs, protocol, tasklog
from litejobs.job import State
from litejobs.jobcontext import JobContext, current
from tests.apps import logapp
from tests.conftest import REPO, SupervisorProcess, launch_supervisor, wait_for

APP = "tests.apps.logapp:app"
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} litejobs\[\d+\] "
                       r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)")
DURATION = r"(under 1 ms|\d+ ms|\d[\d.]* s)"


def start(tmp_path: Path, db: Path, *options: str) -> SupervisorProcess:
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f'app = "{APP}"\n')
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP, "--workers", "2",
           "--config", str(cfg), "--grace", "0.5", *options]
    return launch_supervisor(cmd, REPO, db, tmp_path / "supervisor.log")


def state(app: Any, job_id: int) -> State:
    job = app.get_job(job_id)
    assert job is not None
    return job.state  # type: ignore[no-any-return]


def scenario(sup: SupervisorProcess, db: Path) -> tuple[dict[str, int], set[int]]:
    """Every outcome once: a success, a job that fails three times, a timeout, a job cancelled
    while it runs, one interrupted by the drain, a task that logs. Ends with the supervisor
    drained by SIGTERM; returns the jobs' ids and the pids its workers had."""
    app = logapp.make_app(db)

    def enqueue(name: str, *args: Any) -> int:
        return int(app.tasks[f"logs.{name}"].enqueue(*args).id)

    ids = {name: enqueue(name) for name in ("ok", "fails", "overrun", "chatty")}
    for name, job_id in ids.items():
        wait_for(lambda j=job_id: state(app, j) in (State.SUCCEEDED, State.FAILED), 30,
                 f"job {name} to end", details=sup.output)
    pids = set(sup.worker_pids())
    ids["cancelled"] = enqueue("sleeper", "cancel-me")
    wait_for(lambda: "cancel-me started" in sup.output(), 15, "the sleeper to start",
             details=sup.output)
    pids |= sup.worker_pids()
    job = app.get_job(ids["cancelled"])
    assert job is not None and job.cancel()
    wait_for(lambda: f"job {ids['cancelled']} (logs.sleeper, attempt 1) cancelled"
             in sup.output(), 15, "the cancel's line", details=sup.output)
    ids["drained"] = enqueue("sleeper", "drain-me")
    wait_for(lambda: "drain-me started" in sup.output(), 15, "the second sleeper to start",
             details=sup.output)
    pids |= sup.worker_pids()
    sup.send(signal.SIGTERM)
    assert sup.wait(20) == 0, sup.output()
    return ids, pids


def text_lines(output: str) -> list[tuple[str, str]]:
    """(level, message) of each line; every line must be one of the supervisor's."""
    out = []
    for line in output.splitlines():
        m = TEXT_LINE.fullmatch(line)
        assert m, f"not a log line: {line!r}"
        out.append((m[1], m[2]))
    return out


def no_internals(lines: list[tuple[str, str]], pids: set[int]) -> None:
    """At INFO and above: no "sent ahead", no worker's pid."""
    assert pids
    for level, message in lines:
        if level == "DEBUG":
            continue
        assert "sent ahead" not in message, message
        for pid in pids:
            assert not re.search(rf"\b{pid}\b", message), (pid, message)


def test_text_lines_at_debug_tell_each_outcome_and_carry_the_tasks_own_records(
        tmp_path: Path, db_path: Path) -> None:
    sup = start(tmp_path, db_path, "--log-level", "debug")
    ids, pids = scenario(sup, db_path)
    lines = text_lines(sup.output())
    got = {(level, message) for level, message in lines}
    ok, fails, overrun, chatty, cancelled, drained = (
        ids[k] for k in ("ok", "fails", "overrun", "chatty", "cancelled", "drained"))
    assert any(level == "INFO" and re.fullmatch(
        rf"job {ok} \(logs\.ok, attempt 1\) succeeded in {DURATION}", message)
        for level, message in lines), lines
    expected = {
        ("INFO", f"job {fails} (logs.fails, attempt 1) failed (ValueError: boom); "
                 "retrying in 50 ms"),
        ("INFO", f"job {fails} (logs.fails, attempt 2) failed (ValueError: boom); "
                 "retrying in 50 ms"),
        ("INFO", f"job {fails} (logs.fails, attempt 3) failed for good after 3 attempts: "
                 "ValueError: boom"),
        ("INFO", f"job {overrun} (logs.overrun, attempt 1) timed out after 0.5 s; failed for "
                 "good after 1 attempt"),
        ("INFO", f"job {cancelled} (logs.sleeper, attempt 1) cancelled while running: "
                 "stopped"),
        ("INFO", f"job {drained} (logs.sleeper, attempt 1) interrupted (the grace period "
                 "(0.5 s) ran out while draining): back to queued, to run again (not counted "
                 "against its retries)"),
        ("INFO", f"job {chatty} (logs.chatty, attempt 1) myapp: hello 1"),
        ("DEBUG", f"job {chatty} (logs.chatty, attempt 1) myapp: details 2"),
        ("INFO", "myapp: logapp imported"),
    }
    assert expected <= got, sorted(expected - got)
    no_internals(lines, pids)


def test_json_lines_at_info_are_objects_with_the_jobs_fields(
        tmp_path: Path, db_path: Path) -> None:
    sup = start(tmp_path, db_path, "--log-format", "json")
    ids, pids = scenario(sup, db_path)
    objects = [json.loads(line) for line in sup.output().splitlines()]
    for obj in objects:
        assert {"time", "level", "logger", "message"} <= obj.keys(), obj
        assert datetime.fromisoformat(obj["time"]).utcoffset() == UTC.utcoffset(None)
    ok = [o for o in objects if o.get("job") == ids["ok"]]
    assert len(ok) == 1, ok
    assert ok[0]["logger"] == "litejobs.jobs" and ok[0]["level"] == "INFO"
    assert (ok[0]["task"], ok[0]["attempt"], ok[0]["outcome"]) == ("logs.ok", 1, "succeeded")
    assert re.fullmatch(rf"job {ids['ok']} \(logs\.ok, attempt 1\) succeeded in {DURATION}",
                        ok[0]["message"])
    final = [o for o in objects if o.get("job") == ids["fails"] and o["attempt"] == 3]
    assert [(o["outcome"], o["error"]) for o in final] == [("failed", "ValueError: boom")]
    told = [{k: o.get(k) for k in ("level", "logger", "message", "job", "task", "attempt")}
            for o in objects if o["logger"].startswith("litejobs.task")]
    assert {"level": "INFO", "logger": "litejobs.task.myapp", "message": "hello 1",
            "job": ids["chatty"], "task": "logs.chatty", "attempt": 1} in told
    assert {"level": "INFO", "logger": "litejobs.task.myapp", "message": "logapp imported",
            "job": None, "task": None, "attempt": None} in told
    assert not [o for o in objects if o["level"] == "DEBUG"]
    assert "details 2" not in sup.output()  # under --log-level: not even sent
    no_internals([(o["level"], o["message"]) for o in objects], pids)


def test_a_flood_of_records_is_bounded_and_a_long_one_is_cut(
        tmp_path: Path, db_path: Path) -> None:
    sup = start(tmp_path, db_path)
    app = logapp.make_app(db_path)
    long = app.tasks["logs.long_line"].enqueue(20000)
    assert long.result(timeout=30) is None  # (first: the flood's second drops all records)
    flood = app.tasks["logs.flood"].enqueue(5000)
    assert flood.result(timeout=30) is None
    wait_for(lambda: "of this task: over" in sup.output(), 10, "the dropped line",
             details=sup.output)
    sup.send(signal.SIGTERM)
    assert sup.wait(20) == 0
    lines = text_lines(sup.output())
    sent = [m for _, m in lines if m.startswith(f"job {flood.id} (logs.flood, attempt 1) "
                                                "myapp.flood: line ")]
    dropped = [int(n) for _, m in lines for n in re.findall(
        rf"job {flood.id} \(logs\.flood, attempt 1\) root: dropped (\d+) log records of "
        rf"this task: over {tasklog.RATE} a second", m)]
    assert dropped and len(sent) + sum(dropped) == 5000, (len(sent), dropped)
    assert len(sent) <= tasklog.RATE * len(dropped) + tasklog.RATE
    (cut,) = [m for _, m in lines if m.startswith(f"job {long.id} (logs.long_line, attempt 1) "
                                                  "myapp: ")]
    assert cut == (f"job {long.id} (logs.long_line, attempt 1) myapp: " + "x" * tasklog.MAX_TEXT
                   + f" [cut: the record had 20000 characters, {tasklog.MAX_TEXT} are sent]")


# --- pieces, without processes -----------------------------------------------------------------


def test_the_log_frame_round_trips_with_and_without_a_job() -> None:
    frames = protocol.task_log(7, 2, "logs.ok", logging.INFO, "myapp", 1.5, "hé\nthere")
    frames += protocol.task_log(0, 0, "", logging.WARNING, "root", 2.0, "at import")
    decoded = [protocol.decode_report(p) for p in protocol.Reader().feed(frames)]
    assert decoded == [{"log": (7, "logs.ok", 2, logging.INFO, "myapp", 1.5, "hé\nthere")},
                       {"log": (None, None, None, logging.WARNING, "root", 2.0, "at import")}]


def test_a_job_frame_carries_its_trace_beside_a_steps_results() -> None:
    row = {"id": 3, "attempt": 1, "max_attempts": 2, "interrupts": 0, "scheduled_at": 1.0,
           "task": "t", "queue": "default", "args": "[1]", "kwargs": "{}"}
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    plain = protocol.decode_job(protocol.encode_job(row)[4:])
    traced = protocol.decode_job(protocol.encode_job({**row, "trace": trace})[4:])
    both = protocol.decode_job(protocol.encode_job({**row, "trace": trace,
                                                    "results": "[5]"})[4:])
    step = protocol.decode_job(protocol.encode_job({**row, "results": "[5]"})[4:])
    for msg in (plain, traced, both, step):
        assert isinstance(msg, protocol.JobMessage) and msg.problem is None
        assert (msg.args, msg.kwargs) == ([1], {})
    assert isinstance(plain, protocol.JobMessage) and isinstance(traced, protocol.JobMessage)
    assert isinstance(both, protocol.JobMessage) and isinstance(step, protocol.JobMessage)
    assert (plain.trace, plain.results) == (None, None)
    assert (traced.trace, traced.results) == (trace, None)
    assert (both.trace, both.results) == (trace, [5])
    assert (step.trace, step.results) == (None, [5])


def test_the_handler_sends_a_record_with_its_job_and_counts_what_it_drops() -> None:
    sent: list[bytes] = []
    handler = tasklog.TaskLogHandler(sent.append, logging.INFO)
    logger = logging.getLogger("test_logs.handler")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        token = current.set(JobContext(9, "logs.ok", 1, "default",
                                       datetime.now(UTC), 3))
        try:
            for i in range(tasklog.RATE + 5):
                logger.info("n=%d", i)
            logger.debug("never made")
            handler.settle()
        finally:
            current.reset(token)
    finally:
        logger.removeHandler(handler)
    decoded = [protocol.decode_report(p) for p in protocol.Reader().feed(b"".join(sent))]
    texts = [d["log"][6] for d in decoded if d is not None]
    assert len(texts) == tasklog.RATE + 1
    assert texts[0] == "n=0"
    assert texts[-1] == f"dropped 5 log records of this task: over {tasklog.RATE} a second"
    assert all(d is not None and d["log"][:3] == (9, "logs.ok", 1) for d in decoded)


def test_formatters_text_and_json() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.logThreads, logging.logMultiprocessing)
    out = io.StringIO()
    logs.setup("json", "info", stream=out)
    try:
        logging.getLogger("litejobs.jobs").info("job %s done", 4, extra={
            "job": 4, "task": "t", "attempt": 1, "outcome": "succeeded"})
        logs.task_record(None, None, None, logging.INFO, "myapp", 0.0, "at import")
        logging.getLogger("litejobs").debug("hidden")
        logs.flush()
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        assert first["message"] == "job 4 done" and first["job"] == 4
        assert first["outcome"] == "succeeded" and first["logger"] == "litejobs.jobs"
        assert second == {"time": "1970-01-01T00:00:00.000Z", "level": "INFO",
                          "logger": "litejobs.task.myapp", "message": "at import"}
        out.seek(0)
        out.truncate()
        logs.setup("text", "debug", stream=out)
        logs.task_record(4, "t", 2, logging.DEBUG, "root", 0.0, "hi")
        logs.flush()
        assert out.getvalue().endswith(" DEBUG job 4 (t, attempt 2) root: hi\n")
    finally:
        logs.buffer_lines(False)
        logs._handler = None  # this process's logging is pytest's again
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.logThreads, logging.logMultiprocessing = saved[2], saved[3]
