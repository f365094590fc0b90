"""Shared fixtures: real database files under tmp_path, real `litejobs run` processes.

Nothing here mocks litejobs. Waiting is always on a condition with a deadline (``wait_for``),
never a bare sleep; every supervisor a test starts is SIGKILLed with its whole process group
when the test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from click.testing import Result

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # so `tests.apps.basic` imports here as in `litejobs run`

from tests.apps import basic  # noqa: E402
from tests.postgres.conftest import pg_server, pg_url  # noqa: E402, F401  (for `database`)

APP_SPEC = "tests.apps.basic:app"
T = TypeVar("T")


# --- waiting ---------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], T], timeout: float, what: str = "",
             interval: float = 0.01, details: Callable[[], str] | None = None) -> T:
    """Poll ``predicate`` every ``interval`` s until it returns something truthy (returned).

    Fails the test with ``what`` (and ``details()``, e.g. the supervisor's log) when
    ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = ""
            if details is not None:
                try:
                    extra = "\n--- details ---\n" + details()
                except Exception as exc:  # the failure message matters more than its details
                    extra = f"\n(details unavailable: {exc!r})"
            pytest.fail(f"timed out after {timeout:g} s waiting for "
                        f"{what or getattr(predicate, '__name__', 'a condition')}{extra}",
                        pytrace=False)
        time.sleep(interval)


# --- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (read from /proc, no `ps` needed)."""
    out: set[int] = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and st[1] == pid and st[0] not in ("Z", "X"):
                out.add(int(name))
    return out


def clean_env(db: Path, **extra: str) -> dict[str, str]:
    """The environment of a child: ours without LITEJOBS_* settings, plus the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env["LITEJOBS_TEST_DB"] = str(db)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class SupervisorProcess:
    """One `litejobs run` subprocess in its own session (so its group can be killed)."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, started: float) -> None:
        self.proc = proc
        self.log_path = log_path
        self.started = started

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def worker_pids(self) -> set[int]:
        return children(self.pid)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the supervisor to exit by itself; fail the test (with its log) if it
        does not within ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"litejobs run (pid {self.pid}) did not exit within {timeout:g} s\n"
                        f"--- its output ---\n{self.output()}", pytrace=False)

    def kill_group(self) -> None:
        """SIGKILL the supervisor and every process of its group, then reap it."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def one_line_error(result: Result, *fragments: str) -> str:
    """A CLI error as users see it: non-zero exit, one line, no traceback, with each
    fragment; returns the line."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.output.strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def launch_supervisor(cmd: list[str], cwd: Path, db: Path, log_path: Path,
                      ) -> SupervisorProcess:
    """Start ``cmd`` (a `litejobs run` command line) in its own session with a clean
    environment on ``db``, output to ``log_path``; return once it logs that it is serving.
    Fails the test, with its output, when it exits first."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=clean_env(db), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sup = SupervisorProcess(proc, log_path, time.monotonic())
    # Fail fast, with its output, when it cannot start (instead of jobs "still queued").
    wait_for(lambda: "serving" in sup.output() or not sup.running(), 30,
             "litejobs run to start serving", details=sup.output)
    if not sup.running():
        pytest.fail(f"litejobs run exited at start with code {proc.returncode}:\n"
                    f"{sup.output()}", pytrace=False)
    return sup


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of a test that runs on both stores: a SQLite file path, or a URL of a
    fresh PostgreSQL schema (tests/postgres/conftest.py: skipped without a server, failed
    under CI). A test marked ``sqlite_only("why")`` skips the postgres one."""
    if request.param == "sqlite":
        return str(tmp_path / "jobs.db")
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None:
        pytest.skip(f"SQLite only: {marker.args[0] if marker.args else ''}")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def app(db_path: Path) -> Any:
    """The test process's App on the test database, with every ``basic.*`` task."""
    return basic.make_app(db_path)


@pytest.fixture
def tasks(app: Any) -> SimpleNamespace:
    """The app's tasks by short name: ``tasks.add.enqueue(1, 2)``."""
    return SimpleNamespace(**{name.split(".", 1)[1]: t for name, t in app.tasks.items()})


@pytest.fixture
def start_supervisor(request: pytest.FixtureRequest, tmp_path: Path,
                     db_path: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Factory: ``start_supervisor(workers=2, grace=None, **config)`` starts `litejobs run`.

    ``config`` keys (lease, crash_limit, max_tasks_per_child, …) go into a litejobs.toml
    written under tmp_path, always passed with ``--config`` so no stray ./litejobs.toml or
    LITEJOBS_* variable leaks in. Each process is killed with its group at teardown.
    """
    started: list[SupervisorProcess] = []

    def start(workers: int = 2, grace: float | None = None, **config: Any) -> SupervisorProcess:
        """Start `litejobs run` and return once it logs that it is serving."""
        n = len(started)
        cfg = tmp_path / f"litejobs-{n}.toml"
        lines = [f'app = "{APP_SPEC}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in config.items()]
        cfg.write_text("\n".join(lines) + "\n")
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC,
               "--workers", str(workers), "--config", str(cfg)]
        if grace is not None:
            cmd += ["--grace", str(grace)]
        sup = launch_supervisor(cmd, REPO, db_path, tmp_path / f"supervisor-{n}.log")
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill_group()
    if request.node.stash.get(_FAILED, False):
        for n, sup in enumerate(started):  # shown under "Captured stdout teardown"
            print(f"--- litejobs run #{n} (pid {sup.pid}, exit {sup.proc.returncode}) ---")
            print(sup.output())


class JobLog:
    """The append-only file ``basic.logged`` (and ``basic.flaky``) write one JSON line to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def records(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet; leave it for the next read.
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n")]

    def starts(self, job_id: int | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records()
                if r["event"] == "start" and (job_id is None or r["id"] == job_id)]

    def ends(self, job_id: int | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records()
                if r["event"] == "end" and (job_id is None or r["id"] == job_id)]


@pytest.fixture
def joblog(tmp_path: Path) -> JobLog:
    return JobLog(tmp_path / "jobs.log")


class WriteLockHolder:
    """Another process holding SQLite's write lock on ``db`` with a raw ``BEGIN IMMEDIATE``, as
    any program's long write would, until ``release()`` (which commits) or the end of the
    ``with`` block; killed if the block fails."""

    # The busy timeout: a connection of the test's own process that the garbage collector
    # closes at that moment (an App in a reference cycle with its tasks) checkpoints the WAL
    # under a brief exclusive lock; without a timeout BEGIN IMMEDIATE failed at once (seen in
    # CI, 1 run in many).
    SCRIPT = (
        "import sys, apsw\n"
        "conn = apsw.Connection(sys.argv[1])\n"
        "conn.setbusytimeout(10000)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "conn.execute('COMMIT')\n"
    )

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(db)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().strip()
        assert first == "locked", (first, self.proc.communicate())

    def holding(self) -> bool:
        return self.proc.poll() is None

    def release(self) -> None:
        if self.holding():
            self.proc.communicate("go\n", timeout=30)
            assert self.proc.returncode == 0

    def __enter__(self) -> WriteLockHolder:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.release()
        elif self.holding():
            self.proc.kill()
            self.proc.wait()


def release_together(procs: list[subprocess.Popen[str]], ready: Callable[[], bool],
                     go: Path, timeout: float = 120,
                     before_go: Callable[[], None] | None = None) -> list[tuple[str, str]]:
    """Wait until every process says it is ready (``ready()``), run ``before_go`` (a check of
    the state they all start from), touch ``go`` so they start at once, and return their
    (stdout, stderr); any still running at the end is killed."""
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert time.monotonic() < deadline, "the processes did not get ready"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.005)
        if before_go is not None:
            before_go()
        go.touch()
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
