"""The dashboard's test harness: a real `litejobs serve` on a free port over a real database
(jobs made and run by a real `litejobs run`), and a real Chromium driven by Playwright.

Chromium is Debian's (``apt-get install chromium``), launched by its executable path
(``LITEJOBS_CHROMIUM``, else ``chromium`` on PATH): no ``playwright install``. Without it the
browser tests skip, except under CI (``CI`` set), where they fail: CI installs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SupervisorProcess, clean_env, launch_supervisor, wait_for
from tests.web.helpers import VIEWPORT, Dashboard, chromium_path

pytest.importorskip("starlette", reason="the web extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")

APP_SPEC = "tests.apps.basic:app"


@pytest.fixture
def db_path(database: str) -> Path | str:
    """The test database on both stores (the ``database`` fixture): the app, `litejobs run`
    and `litejobs serve` all get it. A test whose subject is the SQLite file, or a browser
    test that exercises no store path beyond those the other tests run on PostgreSQL (the
    browser is slow), is marked ``sqlite_only("why")``."""
    return database if "://" in database else Path(database)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A litejobs.toml with a queue limit and a cron entry (fires at 03:00 only)."""
    path = tmp_path / "litejobs.toml"
    path.write_text(
        f'app = "{APP_SPEC}"\n'
        "[queues.default]\nconcurrency = 4\n"
        '[queues.mail]\nrate_limit = "10/s"\n'
        '[cron.nightly-sum]\nschedule = "0 3 * * *"\ntask = "basic.add"\nargs = [1, 2]\n')
    return path


@pytest.fixture
def supervisor(tmp_path: Path, db_path: Path, config_file: Path,
               ) -> Iterator[Callable[..., SupervisorProcess]]:
    """Factory: a `litejobs run` on the test database with ``config_file`` (extra args
    appended); killed with its group at the end."""
    started: list[SupervisorProcess] = []

    def start(*extra: str) -> SupervisorProcess:
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "2",
               "--config", str(config_file), *extra]
        sup = launch_supervisor(cmd, REPO, db_path, tmp_path / f"run-{len(started)}.log")
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill_group()


@pytest.fixture
def populated(app: Any, supervisor: Callable[..., SupervisorProcess]) -> SupervisorProcess:
    """A running supervisor that has run real jobs: successes, a failure, one on a second
    queue, and one scheduled for later."""
    sup = supervisor()
    jobs = [app.enqueue("basic.add", [i, i]) for i in range(12)]
    jobs.append(app.enqueue("basic.add", [1, 1], queue="mail"))
    jobs.append(app.enqueue("basic.fail", ["card declined"], retries=0))
    app.enqueue("basic.add", [2, 2], delay=3600)
    wait_for(lambda: all(j.refresh().state in ("succeeded", "failed") for j in jobs), 30,
             "the jobs to finish", details=sup.output)
    return sup


@pytest.fixture
def serve(tmp_path: Path, db_path: Path, config_file: Path,
          ) -> Iterator[Callable[..., Dashboard]]:
    """Factory: ``serve(*args, env={...})`` starts `litejobs serve` on a free loopback port
    and returns once it answers; stopped at the end."""
    started: list[Dashboard] = []

    def start(*args: str, env: dict[str, str] | None = None,
              token: str | None = None) -> Dashboard:
        n = len(started)
        log_path = tmp_path / f"serve-{n}.log"
        cmd = [sys.executable, "-m", "litejobs", "serve", "--config", str(config_file),
               "--bind", "127.0.0.1:0", *args]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(db_path, **(env or {})),
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        board = Dashboard(proc, log_path, "")
        started.append(board)
        line = wait_for(lambda: re.search(r"on (http://\S+?)/? for", board.output())
                        or proc.poll() is not None, 30, "litejobs serve to start",
                        details=board.output)
        if proc.poll() is not None:
            pytest.fail(f"litejobs serve exited with {proc.returncode}:\n{board.output()}",
                        pytrace=False)
        board.url = line.group(1).rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        board.client = httpx.Client(headers=headers, timeout=10, follow_redirects=False)
        board.token = token
        return board

    yield start
    for board in started:
        board.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    path = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium found: .ci/run installs Debian's chromium (or set "
                        "LITEJOBS_CHROMIUM to its path)")
        pytest.skip("no Chromium (apt-get install chromium, or set LITEJOBS_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        chromium = p.chromium.launch(executable_path=path, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, db_path: Path | str) -> Iterator[Any]:
    """A fresh browser page (1280x800) that records any console error or refused script."""
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    # the README's screenshots are the SQLite runs' (a PostgreSQL one shows a test URL)
    pg.screenshots = "://" not in str(db_path)  # type: ignore[attr-defined]
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()
