"""litejobs in one run: enqueue jobs, start `litejobs run`, watch them finish, drain.

    python examples/quickstart/demo.py [--keep] [--timeout SECONDS]

It enqueues a handful of jobs into a fresh SQLite file, starts the supervisor
(`litejobs run --app tasks:app --workers 2`) as a subprocess, waits until every job is
terminal, prints a table, then sends SIGTERM and expects the supervisor to drain and exit 0.
The exit status is 0 only when every job ended as expected, so the demo is also a check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Expect:
    """What one job should end as."""

    job: Any  # litejobs.Job (imported after LITEJOBS_DEMO_DB is set)
    state: str
    attempts: int
    check: Callable[[Any], str | None] = lambda job: None  # a complaint, or None


def supervisor_env(db: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env["LITEJOBS_DEMO_DB"] = db  # so `litejobs run` opens the file this process writes
    return env


def outcome(job: Any) -> str:
    if job.state.value == "succeeded":
        return repr(job.to_dict()["result"])
    return job.error or ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for every job to end (default 60)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory with the database and the log")
    opts = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="litejobs-quickstart-")
    db = os.path.join(workdir, "quickstart.db")
    log_path = os.path.join(workdir, "supervisor.log")
    os.environ["LITEJOBS_DEMO_DB"] = db
    sys.path.insert(0, HERE)
    import tasks

    import litejobs

    terminal = {litejobs.State.SUCCEEDED, litejobs.State.FAILED, litejobs.State.CANCELLED}
    print(f"database: {db}")

    # --- enqueue: committed to the file when each call returns -----------------------------
    expected: list[Expect] = []
    ok = tasks.add.enqueue(2, 3)
    expected.append(Expect(ok, "succeeded", 1,
                           lambda j: None if j.result() == 5 else "result should be 5"))
    expected.append(Expect(tasks.flaky.enqueue("invoice #42"), "succeeded", 3))
    bad = tasks.doomed.enqueue("no such customer")
    expected.append(Expect(bad, "failed", 2,
                           lambda j: None if "ValueError: no such customer" in (j.error or "")
                           else "error should name the ValueError"))
    delayed = tasks.remind.options(delay=2).enqueue("ada")
    expected.append(Expect(delayed, "succeeded", 1, started_after(2.0)))
    batch = tasks.app.enqueue_many([tasks.add.prepare(i, i) for i in range(1, 4)])  # one commit
    expected += [Expect(job, "succeeded", 1) for job in batch]
    first = tasks.add.options(key="order-7").enqueue(7, 7)
    again = tasks.add.options(key="order-7").enqueue(7, 7)  # idempotency key: the same job
    expected.append(Expect(first, "succeeded", 1,
                           lambda j: None if again.id == j.id else "key should dedupe"))
    never = tasks.add.options(delay=3600).enqueue(0, 0)
    never.cancel()  # still scheduled: it will never run
    expected.append(Expect(never, "cancelled", 0))
    print(f"enqueued {len(expected)} jobs (ids {expected[0].job.id}..{expected[-1].job.id})")

    # --- run the supervisor beside us, as you would in production --------------------------
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", "tasks:app", "--workers", "2",
           "--grace", "5"]
    print("starting: litejobs " + " ".join(cmd[3:]) + f"   (log: {log_path})")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=HERE, env=supervisor_env(db), stdout=log,
                                stderr=subprocess.STDOUT)
    failures: list[str] = []
    try:
        deadline = started + opts.timeout
        pending = [e.job for e in expected]
        while pending and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            pending = [j for j in pending if j.refresh().state not in terminal]
        if pending:
            why = "the supervisor exited" if proc.poll() is not None else "timed out"
            failures.append(f"{why}; still not terminal: {[j.id for j in pending]}")
        print(f"all jobs terminal after {time.monotonic() - started:.1f} s\n" if not pending
              else "")
        print_table(expected, failures)
        if not pending:
            print(f"\nok.result() -> {ok.result(timeout=1.0)!r}")
            try:
                bad.result(timeout=1.0)
            except litejobs.JobFailed as exc:
                print(f"bad.result() raised JobFailed: {exc}")
    finally:
        code = stop(proc)
    if code != 0:
        failures.append(f"the supervisor exited {code} after SIGTERM, expected 0")
    else:
        print("supervisor drained and exited 0 after SIGTERM")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        with open(log_path, encoding="utf-8", errors="replace") as f:
            print("\n--- supervisor log ---\n" + f.read(), file=sys.stderr)
    if opts.keep or failures:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


def started_after(seconds: float) -> Callable[[Any], str | None]:
    def check(job: Any) -> str | None:
        waited = job.attempts()[0].started_at - job.created_at.timestamp()
        return None if waited >= seconds else f"started {waited:.2f} s after enqueue"

    return check


def print_table(expected: list[Expect], failures: list[str]) -> None:
    rows = [("ID", "TASK", "STATE", "TRIES", "RESULT / ERROR", "")]
    for e in expected:
        job = e.job
        problems = []
        if job.state.value != e.state:
            problems.append(f"state {job.state.value}, expected {e.state}")
        if job.attempt != e.attempts:
            problems.append(f"{job.attempt} attempts, expected {e.attempts}")
        if not problems and (complaint := e.check(job)):
            problems.append(complaint)
        for p in problems:
            failures.append(f"job {job.id} ({job.task}): {p}")
        text = outcome(job)
        text = text if len(text) <= 48 else text[:47] + "…"
        rows.append((str(job.id), job.task, job.state.value, str(job.attempt), text,
                     "ok" if not problems else "UNEXPECTED"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM drains: no new claims, running jobs get the grace period, exit 0."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


if __name__ == "__main__":
    sys.exit(main())
