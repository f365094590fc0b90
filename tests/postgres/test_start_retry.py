"""A supervisor started before its PostgreSQL server is up retries with back-off (one log
line per attempt) and serves once the server comes, instead of exiting at the first refused
connection; a server that never comes is one clear line after a bounded time.

The server here is a throwaway cluster of this test's own on another port (made with
.ci/postgres, stopped and started with pg_ctl): the shared test server is never touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from litejobs.errors import StorageError
from litejobs.store import verify
from litejobs.store.reach import until_reached
from tests.apps import basic
from tests.conftest import APP_SPEC, REPO, SupervisorProcess, clean_env, wait_for

pytestmark = pytest.mark.timeout(120)
BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
              key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster of this test's own: made (and started) by .ci/postgres, then
    stopped and started by pg_ctl."""

    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        self.dir = Path(f"/tmp/litejobs-pg-startretry-{os.getpid()}-{self.port}")
        env = {**os.environ, "LITEJOBS_PG_PORT": str(self.port),
               "LITEJOBS_PG_DIR": str(self.dir)}
        self.url = subprocess.run([str(REPO / ".ci" / "postgres"), "start"], env=env,
                                  check=True, capture_output=True, text=True,
                                  timeout=90).stdout.strip()

    def pg_ctl(self, *args: str) -> None:
        cmd = [str(BINS[-1] / "pg_ctl"), "-D", str(self.dir / "data"), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.dir / "server.log"), "-w", "-t", "60", "start", "-o",
                    f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if not BINS:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        try:
            c.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(c.dir, ignore_errors=True)


def test_a_supervisor_started_before_its_server_waits_for_it_and_runs_jobs(
        tmp_path: Path, cluster: Cluster) -> None:
    cluster.stop()
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "1"],
            cwd=REPO, env=clean_env(cluster.url), stdin=subprocess.DEVNULL,  # type: ignore[arg-type]
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sup = SupervisorProcess(proc, log_path, time.monotonic())
    try:
        wait_for(lambda: sup.output().count("start-up attempt") >= 2 or not sup.running(), 30,
                 "two start-up attempts", details=sup.output)
        assert sup.running(), sup.output()
        assert "retrying in" in sup.output()
        cluster.start()
        wait_for(lambda: "serving" in sup.output() or not sup.running(), 60,
                 "the supervisor to serve once the server is up", details=sup.output)
        assert sup.running(), sup.output()
        job = basic.make_app(cluster.url).tasks["basic.add"].enqueue(2, 3)
        assert job.result(timeout=30) == 5
    finally:
        sup.kill_group()


def test_a_server_that_never_comes_is_one_line_after_a_bounded_time(
        caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://postgres@127.0.0.1:{_free_port()}/nothing_listens"
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="litejobs"), \
            pytest.raises(StorageError) as info:
        until_reached(lambda: verify(url), url, budget=2.0)
    assert time.monotonic() - t0 < 10
    text = str(info.value)
    assert "\n" not in text and "gave up after" in text and "start the server" in text, text
    tries = [r for r in caplog.records if "start-up attempt" in r.getMessage()]
    assert len(tries) >= 2, caplog.text
