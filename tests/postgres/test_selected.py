"""A postgresql:// database selects the PostgreSQL store wherever it is given (App,
litejobs.toml, LITEJOBS_DATABASE, --database), taken as is (never as a path), shown without
its password; `litejobs run` on it runs an App's jobs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import litejobs
from litejobs.cli import main
from litejobs.config import load_config
from litejobs.health import check as health
from litejobs.store.postgres import PostgresStore
from tests.apps import basic
from tests.conftest import APP_SPEC, REPO, launch_supervisor, one_line_error, wait_for

pytestmark = pytest.mark.timeout(60)


def with_password(url: str) -> str:
    """``url`` with a password (the test server trusts local clients: it is not checked)."""
    return url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@", 1)


def test_app_selects_the_postgres_store_and_never_shows_the_password(pg_url: str) -> None:
    url = with_password(pg_url)
    app = basic.make_app(url)
    assert isinstance(app.store, PostgresStore)
    assert app.database == url
    assert "s3cret" not in app.path and "s3cret" not in repr(app)
    assert app.path.startswith("postgresql://postgres:***@")
    job = app.tasks["basic.add"].enqueue(1, 2)
    assert app.get_job(job.id).state is litejobs.State.QUEUED
    # a second App on the same URL (postgres:// too) reads the same jobs
    other = litejobs.App(url.replace("postgresql://", "postgres://", 1))
    assert other.get_job(job.id) is not None


def test_file_paths_still_work(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "postgresql.db")
    assert app.path == str(tmp_path / "postgresql.db") == app.database


def test_litejobs_toml_and_the_environment_take_the_url_as_is(tmp_path: Path,
                                                               pg_url: str) -> None:
    toml = tmp_path / "litejobs.toml"
    toml.write_text(f'workers = 2\ndatabase = "{pg_url}"\n')
    assert load_config(str(toml), env={}).database == pg_url  # not joined to the file's dir
    assert load_config(None, env={"LITEJOBS_DATABASE": pg_url}).database == pg_url
    app = litejobs.App.from_config(toml)
    assert isinstance(app.store, PostgresStore)
    assert app.enqueue("basic.add", [1, 2]).id == 1


def test_cli_database_flag(tmp_path: Path, pg_url: str,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("LITEJOBS_DATABASE", "LITEJOBS_CONFIG", "LITEJOBS_APP"):
        monkeypatch.delenv(var, raising=False)
    litejobs.App(pg_url).enqueue("basic.add", [1, 2])
    result = CliRunner().invoke(main, ["stats", "--json", "--database", pg_url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["states"]["queued"] == 1
    result = CliRunner().invoke(main, ["backup", "--database", pg_url, str(tmp_path / "b")])
    one_line_error(result, "pg_dump")
    assert not list(tmp_path.iterdir())  # no file named after the URL, no copy
    result = CliRunner().invoke(main, ["doctor", "--database", pg_url])
    assert result.exit_code == 0, result.output
    assert "reachable" in result.output and "clock" in result.output
    result = CliRunner().invoke(main, ["health", "--database", pg_url])
    one_line_error(result, "no supervisor heartbeat")


def test_litejobs_run_on_a_url_runs_the_apps_jobs(tmp_path: Path, pg_url: str) -> None:
    url = with_password(pg_url)
    app = basic.make_app(url)
    queued = app.tasks["basic.add"].enqueue(2, 3)  # before any supervisor
    # --database without the password names the same database as the App's URL
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "2",
           "--database", pg_url]
    before = health(app)
    assert not before.ok and "no supervisor heartbeat" in before.problems[0], before
    sup = launch_supervisor(cmd, REPO, url, tmp_path / "run.log")  # type: ignore[arg-type]
    try:
        wait_for(lambda: health(app).ok, 10, "litejobs health to see the supervisor",
                 details=lambda: str(health(app)))
        assert queued.result(timeout=20) == 5
        t0 = time.monotonic()
        later = app.tasks["basic.add"].enqueue(20, 22)  # the NOTIFY wakes it, no poll
        assert later.result(timeout=20) == 42
        assert time.monotonic() - t0 < 0.9, "picked up by the poll, not the bell"
        assert "s3cret" not in sup.output()
    finally:
        sup.kill_group()


def test_run_refuses_a_database_other_than_the_apps(tmp_path: Path, pg_url: str) -> None:
    url = with_password(pg_url)
    other = pg_url.replace("litejobs_test", "elsewhere")
    env = {"LITEJOBS_TEST_DB": url, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "litejobs", "check", "--app", APP_SPEC,
                          "--database", other], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    line = out.stderr.strip() or out.stdout.strip()
    assert len(line.splitlines()) == 1 and "differs from" in line, line
    assert "s3cret" not in line and "elsewhere" in line


def test_without_the_extra_one_line_says_what_to_install(tmp_path: Path, pg_url: str) -> None:
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "import litejobs\n"
            f"app = litejobs.App({pg_url!r})\n"
            "try:\n    app.enqueue('x')\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == ("the PostgreSQL store needs psycopg 3 and psycopg_pool: "
                                  "pip install 'litejobs[postgres]'"), out


def test_a_rate_limited_queue_keeps_its_rate_behind_running_jobs(tmp_path: Path,
                                                                 pg_url: str) -> None:
    """The PostgreSQL claim gives a rated job only to a worker that starts it at once, never
    to one still busy (sent ahead), so its starts keep the queue's rate: none of 2 a second
    starts closer than a 1 s window allows, with long jobs holding the workers meanwhile."""
    log = tmp_path / "jobs.log"
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f'app = "{APP_SPEC}"\ndatabase = "{pg_url}"\n\n'
                   '[queues.rated]\nrate_limit = "2/s"\n')
    app = basic.make_app(pg_url)
    logged = app.tasks["basic.logged"]
    longs = [logged.enqueue(str(log), 0.6, tag="long") for _ in range(4)]
    rated = [logged.options(queue="rated").enqueue(str(log), tag="rated") for _ in range(6)]
    cmd = [sys.executable, "-m", "litejobs", "run", "--workers", "2", "--config", str(cfg)]
    sup = launch_supervisor(cmd, REPO, pg_url, tmp_path / "run.log")  # type: ignore[arg-type]
    try:
        for job in [*longs, *rated]:
            job.result(timeout=30)
    finally:
        sup.kill_group()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    starts = sorted(r["start"] for r in records if r["event"] == "start" and r["tag"] == "rated")
    assert len(starts) == 6
    for a, b in zip(starts, starts[2:], strict=False):  # any 3 starts span over a second
        assert b - a >= 0.95, starts


def test_serve_and_cron_list_take_a_url(tmp_path: Path, pg_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither looks for a file named after the URL."""
    from litejobs.cli.common import Context
    from litejobs.cli.serve import _app

    monkeypatch.chdir(tmp_path)
    for var in ("LITEJOBS_DATABASE", "LITEJOBS_CONFIG", "LITEJOBS_APP"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(_app(Context(None, pg_url, None)).store, PostgresStore)
    litejobs.App(pg_url).enqueue("basic.add", [1, 2])
    result = CliRunner().invoke(main, ["cron", "list", "--database", pg_url])
    assert result.exit_code == 0 and "no cron entries" in result.output, result.output


def test_an_app_on_a_url_imports_no_store_until_used() -> None:
    """Every worker imports the app's module and never opens the store (its supervisor
    does): App("postgresql://...") loads neither store nor psycopg."""
    code = ("import sys, litejobs\n"
            "app = litejobs.App('postgresql://u:pw@db.example:5433/jobs')\n"
            "print(app.path, sorted(m for m in ('litejobs.store', 'apsw', 'psycopg')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == "postgresql://u:***@db.example:5433/jobs []", out


def test_the_served_dashboards_command_line_holds_no_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`litejobs run --serve` starts `litejobs serve`: a URL goes to it in the environment,
    where `ps` does not show it to other users."""
    from litejobs.cli.serve import serve_command

    monkeypatch.setenv("LITEJOBS_DATABASE", "")  # restored (unset) after the test
    url = "postgresql://jobs:s3cret@db.example/jobs"
    command = serve_command("127.0.0.1:0", url, APP_SPEC, None)
    assert not any("s3cret" in part for part in command), command
    import os

    assert os.environ["LITEJOBS_DATABASE"] == url
    assert "--database" in serve_command("127.0.0.1:0", "/tmp/jobs.db", APP_SPEC, None)
