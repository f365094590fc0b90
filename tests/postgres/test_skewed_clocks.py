"""Hosts' clocks may differ: a `litejobs run` whose clock is an hour off (libfaketime) still
runs a delayed job on time and fires cron instants when they come on the server's clock,
and two supervisors on skewed clocks fire each instant once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.apps import basic
from tests.conftest import APP_SPEC, REPO, SupervisorProcess, clean_env, wait_for
from tests.postgres.skew import needs_faketime, skewed_env

pytestmark = [pytest.mark.timeout(90), needs_faketime]


def skewed(cmd: list[str], offset: str, db: str, log_path: Path,
           **env: str) -> SupervisorProcess:
    """``cmd`` run under libfaketime (its clock ``offset`` from ours, e.g. "-1h")."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO,  # type: ignore[call-overload]
                                env=clean_env(db, **skewed_env(offset), **env),
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    sup = SupervisorProcess(proc, log_path, time.monotonic())
    wait_for(lambda: "serving" in sup.output() or not sup.running(), 30,
             "litejobs run to start serving", details=sup.output)
    assert sup.running(), sup.output()
    return sup


def run_cmd(app: str) -> list[str]:
    return [sys.executable, "-m", "litejobs", "run", "--app", app, "--workers", "2"]


@pytest.mark.parametrize("offset", ["-1h", "+1h"])
def test_a_supervisor_an_hour_off_runs_delayed_jobs_on_time(
        tmp_path: Path, pg_url: str, offset: str) -> None:
    app = basic.make_app(pg_url)
    sup = skewed(run_cmd(APP_SPEC), offset, pg_url, tmp_path / "run.log")
    try:
        assert "faketime" not in sup.output()
        now = app.tasks["basic.add"].enqueue(1, 1)
        assert now.result(timeout=15) == 2
        t0 = time.time()
        later = app.tasks["basic.add"].options(delay=2.0).enqueue(2, 2)
        assert later.result(timeout=15) == 4  # not an hour late
        started = later.attempts()[-1].started_at
        # not early either (times read back are the server's, the same clock as ours here)
        assert started >= t0 + 1.9, (started - t0, sup.output())
    finally:
        sup.kill_group()


def fires(log: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in log.read_text().splitlines(keepends=True)
                if line.endswith("\n")]
    except FileNotFoundError:
        return []


def test_cron_fires_each_instant_once_on_time_with_supervisors_two_hours_apart(
        tmp_path: Path, pg_url: str) -> None:
    log = tmp_path / "fires.log"
    cron_app = "tests.apps.cronapp:app"
    sups = [skewed(run_cmd(cron_app), offset, pg_url, tmp_path / f"run{n}.log",
                   LITEJOBS_TEST_LOG=str(log))
            for n, offset in enumerate(["-1h", "+1h"])]
    try:
        started = time.time()
        wait_for(lambda: len({f["instant"] for f in fires(log)
                              if f["instant"] > started + 0.5}) >= 5, 30,
                 "five instants fired", details=lambda: "\n".join(s.output() for s in sups))
        ids = [f["id"] for f in fires(log)]
        assert len(ids) == len(set(ids)), "a job ran twice"
        import psycopg

        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT instant, job_id FROM cron_fires WHERE outcome = "
                                "'fired'").fetchall()
        # every instant fired is of the server's clock (ours here), none an hour off, and
        # each has one job (the (entry, instant) row is unique: an instant fires once)
        assert rows and all(abs(i - started) < 60 for i, _ in rows), sorted(rows)
        assert len({j for _, j in rows}) == len(rows)
        assert all(s.running() for s in sups)
    finally:
        for s in sups:
            s.kill_group()
