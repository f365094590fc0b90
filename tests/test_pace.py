"""A worker's pace (how many jobs it is sent ahead: dispatch.PREFETCH) is the time its jobs
ran in the worker, not the time their outcomes waited for the supervisor to read them. A
supervisor busy 7-15 ms in a transaction (a limited claim on PostgreSQL) made no-op jobs look
like 10-20 ms ones: their workers were sent nothing ahead, so each job cost a transaction,
which kept them looking slow (a limited queue drained at 532-2,002 jobs/s from run to run)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from litejobs import protocol
from litejobs.config import Config
from litejobs.dispatch import Dispatcher, depth
from litejobs.outcomes import Outcomes
from litejobs.pool import Assignment, Pool, WorkerProcess
from litejobs.worker import run_job
from tests.apps import basic


def _message(task: str, args: list[object]) -> protocol.JobMessage:
    return protocol.JobMessage(id=1, attempt=1, task=task, queue="default",
                               scheduled_at=time.time(), max_attempts=1, interrupts=0,
                               args=args, kwargs={})


def test_an_outcome_says_how_long_the_attempt_ran_in_its_worker(tmp_path: Path) -> None:
    app = basic.make_app(tmp_path / "jobs.db")
    before = time.perf_counter()
    done = protocol.decode_report(run_job(app, _message("basic.slow", [0.05]))[4:])
    spent = time.perf_counter() - before
    assert done is not None and done["ok"] is True
    assert 0.05 <= done["took"] <= spent, (done, spent)
    failed = protocol.decode_report(run_job(app, _message("basic.fail", ["x"]))[4:])
    assert failed is not None and failed["ok"] is False
    assert 0.0 < failed["took"] < spent, failed


def test_the_pace_is_the_workers_measure_not_the_wait_to_be_read(tmp_path: Path) -> None:
    pool = Pool("tests.apps.basic:app", "host:1")
    outcomes = Outcomes(pool, {}, 3, lambda w: None)
    dispatch = Dispatcher(pool, Config(), outcomes)
    proc = subprocess.Popen(["true"])
    proc.wait()
    w = WorkerProcess(proc=proc, name="host:1:w1", to_worker=-1, from_worker=-1)
    for n in range(1, 21):
        a = Assignment(n, 1, "basic.add", "default", 3, 0, 0, time.time() - 0.015, None, None)
        w.running[(a.id, a.attempt)] = a
        # a no-op that ran 0.1 ms, read 15 ms after it was handed out
        assert dispatch.finished(w, {"id": n, "attempt": 1, "ok": True, "result": "2",
                                     "took": 0.0001}, time.time())
    assert w.pace < 0.001 and depth(w.pace) == 32, w.pace
    # without the worker's measure (an outcome the supervisor made), the wait counts
    a = Assignment(99, 1, "basic.add", "default", 3, 0, 0, time.time() - 1.0, None, None)
    w.running[(99, 1)] = a
    dispatch.finished(w, {"id": 99, "attempt": 1, "ok": True, "result": "2"}, time.time())
    assert w.pace > 0.25, w.pace
