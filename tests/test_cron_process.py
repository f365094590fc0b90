"""Cron under real `litejobs run` processes: once per instant, across kills and supervisors.

Each process test runs on both stores (the ``database`` fixture): a SQLite file, or a fresh
PostgreSQL schema that two supervisors share as two hosts would."""

from __future__ import annotations

import itertools
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SupervisorProcess, clean_env, wait_for

APP = "tests.apps.cronapp:app"


class CronRun:
    def __init__(self, tmp_path: Path, database: str) -> None:
        self.tmp = tmp_path
        self.db = database  # a file path or a URL (a Path would fold a URL's "//")
        self.log = tmp_path / "fires.log"
        self.procs: list[SupervisorProcess] = []

    def start(self, *extra: str) -> SupervisorProcess:
        n = len(self.procs)
        out = self.tmp / f"supervisor-{n}.log"
        cfg = self.tmp / "empty.toml"
        cfg.write_text("")
        with open(out, "wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "litejobs", "run", "--app", APP, "--workers", "2",
                 "--config", str(cfg), *extra],
                cwd=REPO, env=clean_env(self.db, LITEJOBS_TEST_LOG=str(self.log)),
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                start_new_session=True)
        sup = SupervisorProcess(proc, out, time.monotonic())
        self.procs.append(sup)
        return sup

    def fires(self) -> list[dict[str, Any]]:
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n")]

    def stop_all(self) -> None:
        for p in self.procs:
            p.kill_group()


@pytest.fixture
def cron_run(tmp_path: Path, database: str):  # type: ignore[no-untyped-def]
    run = CronRun(tmp_path, database)
    yield run
    run.stop_all()


def assert_once_per_instant(fires: list[dict[str, Any]]) -> None:
    """Each instant made one job. (A job whose run was killed with its supervisor runs again
    when rescued, at least once: that is one fire, not two.)"""
    jobs: dict[float, set[int]] = {}
    for f in fires:
        jobs.setdefault(f["instant"], set()).add(f["id"])
    dupes = {k: v for k, v in jobs.items() if len(v) > 1}
    assert not dupes, f"instants fired more than once: {dupes}"


def test_every_second_entry_fires_once_per_second(cron_run: CronRun) -> None:
    sup = cron_run.start()
    wait_for(lambda: len(cron_run.fires()) >= 5, 20, "five fires", details=sup.output)
    sup.send(signal.SIGTERM)
    assert sup.wait(15) == 0
    fires = cron_run.fires()
    assert_once_per_instant(fires)
    instants = sorted(f["instant"] for f in fires)
    assert all(b - a == 1.0 for a, b in itertools.pairwise(instants)), instants
    lateness = [f["started"] - f["instant"] for f in fires[1:]]  # the first waits for a worker
    assert statistics.median(lateness) < 0.5, lateness


def test_supervisor_killed_and_restarted_fires_no_instant_twice(cron_run: CronRun) -> None:
    first = cron_run.start()
    wait_for(lambda: len(cron_run.fires()) >= 3, 20, "three fires", details=first.output)
    first.kill_group()  # SIGKILL everything, possibly mid-fire
    killed_at = time.time()
    wait_for(lambda: time.time() - killed_at > 2.5, 5, "instants to pass while down")
    before = {f["instant"] for f in cron_run.fires()}
    second = cron_run.start()
    wait_for(lambda: len(cron_run.fires()) >= len(before) + 3, 20, "fires after the restart",
             details=second.output)
    second.send(signal.SIGTERM)
    assert second.wait(15) == 0
    fires = cron_run.fires()
    assert_once_per_instant(fires)
    after = sorted(f["instant"] for f in fires if f["instant"] not in before)
    # misfire = "latest": of the instants missed while down, only the newest fires (once).
    missed = [i for i in after if i < second_started(second)]
    assert len(missed) <= 1, missed


def second_started(sup: SupervisorProcess) -> float:
    return time.time() - (time.monotonic() - sup.started)


def test_two_supervisors_on_one_file_fire_each_instant_once(cron_run: CronRun) -> None:
    a = cron_run.start()
    b = cron_run.start()
    wait_for(lambda: len(cron_run.fires()) >= 6, 25, "six fires", details=a.output)
    a.send(signal.SIGTERM)
    b.send(signal.SIGTERM)
    assert a.wait(15) == 0 and b.wait(15) == 0
    fires = cron_run.fires()
    assert_once_per_instant(fires)
    instants = sorted(f["instant"] for f in fires)
    assert instants[-1] - instants[0] == len(instants) - 1  # none missed either


@pytest.mark.parametrize("table, message", [
    ('schedule = "0 0 30 2 *"\ntask = "tests.apps.cronapp.every_second"', "never fires"),
    ('schedule = "61 * * * *"\ntask = "tests.apps.cronapp.every_second"',
     "not a valid cron expression"),
    ('schedule = "* * * * *"\ntask = "tests.apps.cronapp.every_second"\n'
     'timezone = "Europe/Nowhere"', "unknown time zone"),
    ('schedule = "* * * * *"\ntask = "tests.apps.cronapp.every_second"\nmisfire = "often"',
     "misfire must be one of"),
    ('schedule = "* * * * *"\ntask = "tests.apps.cronapp.every_second"\ncolour = "red"',
     "unknown key"),
    ('schedule = "* * * * *"\ntask = "no.such.task"', "unknown task 'no.such.task'"),
])
def test_check_and_run_refuse_invalid_cron_config(tmp_path: Path, table: str,
                                                  message: str) -> None:
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f'app = "{APP}"\n\n[cron.nightly]\n{table}\n')
    env = clean_env(tmp_path / "cron.db", LITEJOBS_TEST_LOG=str(tmp_path / "x.log"))
    for command in ("check", "run"):
        proc = subprocess.run([sys.executable, "-m", "litejobs", command, "--config", str(cfg)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0, proc.stdout
        assert message in proc.stderr, proc.stderr
        assert "nightly" in proc.stderr and str(cfg) in proc.stderr
        assert "Traceback" not in proc.stderr
