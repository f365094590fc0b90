"""``litejobs run -- CMD`` with a command that daemonizes itself (``gunicorn --daemon``): it
forks a server into a session of its own and exits 0 at once, so the supervisor drains and
exits 0 while the server runs on, enqueueing jobs no worker will run. The log said only
"exited by itself with status 0"; it must say what happened and what to do."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import APP_SPEC, REPO, clean_env, wait_for

DAEMON = """\
import os, sys, time
from pathlib import Path

if os.fork() == 0:  # the server, in a session of its own, as gunicorn --daemon does
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # as a daemon does: it keeps no terminal (nor our pipes)
        os.dup2(null, fd)
    Path(sys.argv[1]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.1)
    os._exit(0)
sys.exit(0)
"""

HINT = ("a command that daemonizes itself (gunicorn --daemon, a service script) cannot be "
        "supervised; run it in the foreground")


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC,
                           "--workers", "1", "--", *argv], cwd=REPO,
                          env=clean_env(tmp_path / "jobs.db"), capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_daemonizing_command_is_named_with_what_to_do(tmp_path: Path) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    pid_file = tmp_path / "daemon.pid"
    try:
        done = run(tmp_path, sys.executable, str(script), str(pid_file))
        assert done.returncode == 0, done.stderr
        warning = [ln for ln in done.stderr.splitlines() if " WARNING " in ln]
        assert len(warning) == 1, done.stderr
        assert "exited by itself with status 0 after" in warning[0]
        assert HINT in warning[0], warning[0]
        assert "drained" in done.stderr
    finally:
        pid = wait_for(lambda: pid_file.exists() and pid_file.read_text(), 10,
                       "the daemon's pid file")
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def test_a_command_failing_at_once_gets_no_daemon_hint(tmp_path: Path) -> None:
    done = run(tmp_path, "false")
    assert done.returncode == 1
    assert "exited by itself with status 1" in done.stderr
    assert "daemonizes" not in done.stderr
