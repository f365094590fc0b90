"""``litejobs run -- CMD``: the supervisor also runs a command (a web server) and the two live
and die together. Real processes and real signals; the command is a small Python script that
writes what happens to it into a file."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from litejobs.cli import main
from tests.conftest import (
    APP_SPEC,
    REPO,
    JobLog,
    SupervisorProcess,
    alive,
    launch_supervisor,
    one_line_error,
    wait_for,
)

COMMAND = """\
import os, signal, sys, time
from pathlib import Path

out = Path(sys.argv[1])
trigger = out.with_suffix(".exit")

def note(line):
    with out.open("a") as f:
        f.write(line + "\\n")

def on_signal(signum, frame):
    note(f"signal {signum}")
    if signum != signal.SIGHUP:
        sys.exit(0)

for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, on_signal)
note(f"start {os.getpid()} {os.getpgid(0)} {os.environ.get('RUN_COMMAND_MARK')}")
while not trigger.exists():
    time.sleep(0.01)
sys.exit(int(trigger.read_text()))
"""


class Pair:
    """A `litejobs run -- python command.py OUT` and the command's record file."""

    def __init__(self, sup: SupervisorProcess, out: Path) -> None:
        self.sup = sup
        self.out = out

    def lines(self) -> list[str]:
        try:
            return [ln for ln in self.out.read_text().splitlines() if ln]
        except FileNotFoundError:
            return []

    def started(self) -> list[str]:
        """The command's start line, split: ["start", pid, pgid, mark]."""
        line = wait_for(lambda: next((ln for ln in self.lines() if ln.startswith("start")),
                                     None), 30, "the command to start",
                        details=self.sup.output)
        return line.split()

    def exit_with(self, code: int) -> None:
        self.out.with_suffix(".exit").write_text(str(code))


@pytest.fixture
def run_pair(tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Callable[..., Pair]]:
    pairs: list[Pair] = []
    monkeypatch.setenv("RUN_COMMAND_MARK", "seen-by-the-command")
    script = tmp_path / "command.py"
    script.write_text(COMMAND)

    def start(grace: float = 30.0, argv: list[str] | None = None) -> Pair:
        n = len(pairs)
        cfg = tmp_path / f"litejobs-{n}.toml"
        cfg.write_text(f'app = "{APP_SPEC}"\n')
        out = tmp_path / f"command-{n}.txt"
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "2",
               "--config", str(cfg), "--grace", str(grace), "--",
               *(argv or [sys.executable, str(script), str(out)])]
        sup = launch_supervisor(cmd, REPO, db_path, tmp_path / f"supervisor-{n}.log")
        pair = Pair(sup, out)
        pairs.append(pair)
        return pair

    yield start
    for pair in pairs:
        pair.sup.kill_group()
        start_line = next((ln for ln in pair.lines() if ln.startswith("start")), None)
        if start_line is not None:  # the command has its own session: kill it too
            try:
                os.killpg(int(start_line.split()[2]), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_command_starts_in_its_own_group_and_sees_the_environment(run_pair: Any) -> None:
    pair = run_pair()
    _, pid, pgid, mark = pair.started()
    assert mark == "seen-by-the-command"
    assert pid == pgid  # its own process group (and session)
    assert int(pgid) != os.getpgid(pair.sup.pid)
    assert "started the command" in pair.sup.output()


def test_sigterm_stops_both_with_a_clean_drain(run_pair: Any) -> None:
    pair = run_pair()
    pid = int(pair.started()[1])
    pair.sup.send(signal.SIGTERM)
    assert pair.sup.wait(30) == 0
    assert f"signal {int(signal.SIGTERM)}" in pair.lines()
    assert not alive(pid)
    assert "drained" in pair.sup.output()


def test_sighup_is_forwarded_and_stops_nothing(run_pair: Any) -> None:
    pair = run_pair()
    pid = int(pair.started()[1])
    pair.sup.send(signal.SIGHUP)
    wait_for(lambda: f"signal {int(signal.SIGHUP)}" in pair.lines(), 10,
             "the command to get SIGHUP", details=pair.sup.output)
    assert pair.sup.running() and alive(pid)
    pair.sup.send(signal.SIGINT)
    assert pair.sup.wait(30) == 0
    assert f"signal {int(signal.SIGINT)}" in pair.lines()


def test_a_command_without_a_sighup_reload_dies_of_it_and_takes_the_supervisor_down(
        run_pair: Any) -> None:
    pair = run_pair(argv=["sleep", "600"])  # sleep keeps SIGHUP's default action: it dies
    wait_for(lambda: "started the command" in pair.sup.output(), 30, "the command to start",
             details=pair.sup.output)
    pair.sup.send(signal.SIGHUP)
    assert pair.sup.wait(30) == 128 + int(signal.SIGHUP)  # so systemd restarts the pair
    assert "exited on the SIGHUP passed on to it" in pair.sup.output()


def test_command_exiting_by_itself_drains_and_exits_with_its_status(run_pair: Any) -> None:
    pair = run_pair()
    pair.started()
    pair.exit_with(3)
    assert pair.sup.wait(30) == 3
    out = pair.sup.output()
    assert "exited by itself with status 3" in out
    assert "drained" in out


def test_a_job_running_when_the_command_exits_finishes_within_the_grace(
        run_pair: Any, app: Any, joblog: JobLog) -> None:
    pair = run_pair(grace=30)
    pair.started()
    job = app.tasks["basic.logged"].enqueue(str(joblog), seconds=1.5)
    wait_for(lambda: joblog.starts(job.id), 30, "the job to start",
             details=pair.sup.output)
    pair.exit_with(3)
    assert pair.sup.wait(30) == 3
    assert joblog.ends(job.id)
    assert app.get_job(job.id).state == "succeeded"


def test_kill_9_of_the_supervisor_ends_the_command(run_pair: Any) -> None:
    pair = run_pair()
    pid = int(pair.started()[1])
    os.kill(pair.sup.pid, signal.SIGKILL)
    pair.sup.wait(10)
    wait_for(lambda: not alive(pid), 10, "the command to die with the supervisor")


def test_a_missing_executable_is_one_line_before_anything_runs(tmp_path: Path,
                                                               db_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--app", APP_SPEC, "--database", str(db_path),
                                       "--", "no-such-command-litejobs", "--flag"])
    one_line_error(result, "no-such-command-litejobs", "not found")
    assert not db_path.exists()  # refused before the file was even opened
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\n")
    result = CliRunner().invoke(main, ["run", "--app", APP_SPEC, "--database", str(db_path),
                                       "--", str(script)])
    one_line_error(result, str(script), "not an executable")
