"""The supervisor's line about an outcome says what the store decided: a success the store
refused (its attempt's lease ran out while the supervisor was frozen, and the job was rescued)
is a warning that says so, not "succeeded" (the many-hosts chaos test once showed a job
"succeeded" whose success the store had refused as stale)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import litejobs
from litejobs import maintenance
from litejobs.figures import Figures
from litejobs.outcomes import REFUSED, UNSURE, Outcome, Outcomes
from litejobs.pool import Assignment
from litejobs.store import QueueLimits
from tests.conftest import JobLog, SupervisorProcess, wait_for

LEASE = 1.0
RUNS = 3.0  # seconds the job runs: past its lease, so the rescue comes first


def test_a_success_refused_after_a_rescue_is_logged_as_refused_not_succeeded(
        app: Any, tasks: Any, joblog: JobLog,
        start_supervisor: Callable[..., SupervisorProcess], tmp_path: Path) -> None:
    sup = start_supervisor(workers=1, lease=LEASE, crash_limit=50)
    job = tasks.logged.enqueue(str(joblog), RUNS, only_first=True)
    wait_for(lambda: joblog.starts(job.id), 20, "the job to start")
    sup.send(signal.SIGSTOP)  # the supervisor alone: its worker runs on
    try:
        # the lease runs out without renewals: another supervisor's rescue takes the job
        wait_for(lambda: app.store.write(lambda tx: maintenance.rescue_expired(
            tx, time.time(), {}, crash_limit=50)), 20, "the lease to run out and the rescue")
        assert not joblog.ends(job.id), "the job ended before the rescue: make RUNS longer"
        wait_for(lambda: joblog.ends(job.id), 20, "attempt 1 to finish in its worker")
    finally:
        sup.send(signal.SIGCONT)
    # the supervisor reads the success and sends it: refused (attempt 1 no longer holds it)
    head = f"job {job.id} (basic.logged, attempt 1)"
    line = wait_for(lambda: next((ln for ln in sup.output().splitlines() if head in ln), None),
                    20, f"the supervisor's line about attempt 1\n{sup.output()}")
    assert "refused its outcome" in line and "lease was lost" in line, line
    assert "WARNING" in line, line
    assert f"{head} succeeded in" not in sup.output()
    # nothing lost: the rescued job runs again and succeeds
    wait_for(lambda: app.get_job(job.id).state.value == "succeeded", 30,
             f"attempt 2 to succeed\n{sup.output()}")
    assert app.get_job(job.id).attempt == 2


# --- what ``Outcomes.record`` learns from the store, on both stores ----------------------------


def _claimed(store: Any, n: int) -> list[Outcome]:
    """``n`` jobs claimed as a supervisor does, each as a success to report."""
    now = time.time()
    rows = store.write(lambda tx: tx.claim([f"sup:1:w{i}" for i in range(n)],
                                           [QueueLimits("default")], now, 30.0))
    assert len(rows) == n, rows
    return [Outcome("ok", Assignment(int(r["id"]), int(r["attempt"]), "t.work", "default", 3, 0,
                                     0, now, None, None), str(r["leased_by"]), time.time())
            for r in rows]


def test_a_batch_tells_which_successes_the_store_refused(database: str) -> None:
    """Three successes in one batch, one of them rescued first: that one (only) is refused;
    the others are recorded and announced as succeeded."""
    app = litejobs.App(database)
    try:
        for _ in range(3):
            app.enqueue("t.work")
        oks = _claimed(app.store, 3)
        rescued = oks[1]
        app.store.write(lambda tx: tx.unclaim(rescued.a.id, rescued.a.attempt))
        app.store.write(lambda tx: Outcomes.record(tx, oks))
        assert [o.verdict for o in oks] == ["", REFUSED, ""]
        assert [app.get_job(o.a.id).state.value for o in oks] == [
            "succeeded", "queued", "succeeded"]
        # /metrics counts what the store recorded: the refused success is not a success
        figures = Figures()
        figures.ended(oks, time.time())
        counted = {(row[2], row[3]): row[4] for row in figures.rows() if row[1] == "outcome"}
        assert counted == {("t.work", "succeeded"): 2.0}, counted
    finally:
        app.store.close()


def test_a_resent_outcome_not_taken_is_unsure_not_refused(database: str) -> None:
    """A batch sent again after its write failed (maybe after its COMMIT reached the server):
    what the store does not take then may be the first send's duplicate, so its line says
    the store did not record it, not that it was refused. A verdict of a rolled-back send is
    not kept."""
    app = litejobs.App(database)
    try:
        app.enqueue("t.work")
        [o] = _claimed(app.store, 1)
        failed = Outcome("fail", o.a, o.worker, o.finished, error="boom", retry_at=None)
        app.store.write(lambda tx: Outcomes.record(tx, [failed]))
        assert failed.verdict == "" and failed.sends == 1
        app.store.write(lambda tx: Outcomes.record(tx, [failed]))  # the resend
        assert failed.verdict == UNSURE and failed.sends == 2
        assert [a.outcome for a in app.store.attempts(o.a.id)] == ["failed"]
    finally:
        app.store.close()
