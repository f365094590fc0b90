"""The ``litejobs`` command, in process (click's CliRunner) and as a real subprocess.

Each test runs on both stores (the ``database`` fixture): a SQLite file, or a fresh PostgreSQL
schema; those about the file itself (not a database, corrupt, named two ways) on SQLite only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import litejobs
from litejobs.cli import main
from litejobs.config import load_config
from litejobs.job import State
from litejobs.store import QueueLimits
from tests.conftest import one_line_error

APP_FILE = Path(__file__).resolve().parent / "apps" / "cliapp.py"
APP_SPEC = f"{APP_FILE}:app"
ENV_VARS = ("LITEJOBS_DATABASE", "LITEJOBS_APP", "LITEJOBS_WORKERS", "LITEJOBS_CONFIG",
            "LITEJOBS_GRACE", "LITEJOBS_DURABILITY")
JOB_FIELDS = {"id", "task", "queue", "state", "attempt", "priority", "args", "kwargs", "run_at",
              "created_at", "error"}
ATTEMPT_FIELDS = {"attempt", "outcome", "started_at", "finished_at", "error"}


class Cli:
    def __init__(self, tmp_path: Path, database: str) -> None:
        self.dir = tmp_path
        #: The app's database: the file tmp_path/jobs.db, or a PostgreSQL URL (kept a str: a
        #: Path would fold its "//").
        self.db: Path | str = database if "://" in database else tmp_path / "jobs.db"
        self.runner = CliRunner()

    def untouched(self) -> bool:
        """True when the database was never created (a file not there; a schema always is
        looked at: its jobs are counted)."""
        return isinstance(self.db, Path) and not self.db.exists()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(main, [str(a) for a in args], env=env)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self(*args, env=env)
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    def app(self) -> litejobs.App:
        """A producer's App on the same file (not the cliapp module's)."""
        return litejobs.App(self.db)


@pytest.fixture
def cli(tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no stray ./litejobs.toml
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LITEJOBS_TEST_DB", database if "://" in database
                       else str(tmp_path / "jobs.db"))
    # the app module reads LITEJOBS_TEST_DB when imported: import it afresh for each test
    sys.modules.pop("cliapp", None)
    yield Cli(tmp_path, database)
    sys.modules.pop("cliapp", None)


def usage_error(result: Result, fragment: str) -> None:
    """Click's own usage errors: exit 2, a usage hint, the problem; no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert fragment in result.output


def claim(app: litejobs.App, now: float, queue: str = "default") -> dict:
    rows = app.store.write(lambda tx: tx.claim(["sup:w1"], [QueueLimits(queue)], now, 30))
    assert len(rows) == 1
    return rows[0]


def make_failed(app: litejobs.App) -> int:
    job = app.enqueue("cli.add", args=[1, "x"], queue="to-fail")
    now = time.time()
    row = claim(app, now, queue="to-fail")
    assert app.store.write(lambda tx: tx.fail(job.id, row["attempt"], "TypeError: bad operand",
                                              "Traceback (most recent call last): …", "sup:w1",
                                              now, now + 0.5, retry_at=None))
    assert app.get_job(job.id).state is State.FAILED
    return job.id


# --- init ------------------------------------------------------------------------------------


def test_init_writes_a_loadable_file_and_never_overwrites(cli) -> None:
    result = cli.ok("init")
    path = cli.dir / "litejobs.toml"
    assert path.exists()
    assert "litejobs.toml" in result.output
    config = load_config(str(path), env={})
    assert config.app == "myapp.jobs:app"
    assert config.database == str(cli.dir / "litejobs.db")

    path.write_text(path.read_text() + "# my edits\n")
    before = path.read_text()
    one_line_error(cli("init"), "already exists", "--force")
    assert path.read_text() == before

    cli.ok("init", "--force", "--app", "shop.tasks:app", "--database", "var/shop.db")
    config = load_config(str(path), env={})
    assert config.app == "shop.tasks:app"
    assert config.database == str(cli.dir / "var" / "shop.db")
    assert "# my edits" not in path.read_text()


def test_init_at_a_given_path(cli) -> None:
    (cli.dir / "conf").mkdir()
    target = cli.dir / "conf" / "jobs.toml"
    cli.ok("init", "--config", target)
    assert load_config(str(target), env={}).database == str(cli.dir / "conf" / "litejobs.db")
    one_line_error(cli("init", "--config", target), "already exists")


def test_init_into_a_missing_directory_is_one_line(cli) -> None:
    target = cli.dir / "nodir" / "litejobs.toml"
    one_line_error(cli("init", "--config", target), str(target))
    assert not target.parent.exists()


# --- check -----------------------------------------------------------------------------------


def test_check_ok_with_app_flag(cli) -> None:
    result = cli.ok("check", "--app", APP_SPEC)
    assert "cli.add" in result.output and "cli.mail" in result.output
    assert str(cli.db) in result.output


def test_check_ok_with_config_file(cli) -> None:
    database = "jobs.db" if isinstance(cli.db, Path) else cli.db  # a file relative to the toml
    (cli.dir / "litejobs.toml").write_text(f'app = "{APP_SPEC}"\ndatabase = "{database}"\n')
    result = cli.ok("check")
    assert "ok" in result.output and str(cli.db) in result.output


def test_check_fails_on_a_bad_key_naming_the_line(cli) -> None:
    path = cli.dir / "litejobs.toml"
    path.write_text(f'app = "{APP_SPEC}"\n\nwokers = 4\n')
    one_line_error(cli("check"), f"{path}:3", "wokers")
    one_line_error(cli("check", "--config", path), f"{path}:3", "wokers")


def test_check_fails_on_invalid_toml_naming_the_line(cli) -> None:
    path = cli.dir / "litejobs.toml"
    path.write_text('app = "x:y"\nworkers = = 4\n')
    one_line_error(cli("check"), f"{path}:2", "workers")


def test_check_fails_on_an_unimportable_app(cli) -> None:
    one_line_error(cli("check", "--app", "no_such_module_here:app"), "no_such_module_here")


@pytest.mark.sqlite_only("names the app's file another way (./jobs.db)")
def test_check_refuses_a_database_other_than_the_apps(cli) -> None:
    other = cli.dir / "other.db"
    one_line_error(cli("check", "--app", APP_SPEC, "--database", other), str(other), str(cli.db))
    one_line_error(cli("check", "--app", APP_SPEC, env={"LITEJOBS_DATABASE": str(other)}),
                   str(other), str(cli.db))
    (cli.dir / "litejobs.toml").write_text(f'app = "{APP_SPEC}"\ndatabase = "other.db"\n')
    one_line_error(cli("check"), str(other), str(cli.db))
    # the same file named another way is fine
    cli.ok("check", "--app", APP_SPEC, "--database", "./jobs.db")
    assert not other.exists()


@pytest.mark.sqlite_only("a file that is not a SQLite database")
def test_check_refuses_a_foreign_database(cli) -> None:
    cli.db.write_text("not a database\n")
    one_line_error(cli("check", "--app", APP_SPEC), "not a SQLite database")
    assert cli.db.read_text() == "not a database\n"


@pytest.mark.sqlite_only("overwrites pages of the SQLite file")
def test_check_and_stats_refuse_a_corrupt_file_in_one_line(cli) -> None:
    app = cli.app()
    app.enqueue_many([litejobs.Prepared("cli.add", ("x" * 2000, i), {}) for i in range(300)])
    app.store.close()
    page, size = 4096, cli.db.stat().st_size
    with open(cli.db, "r+b") as f:
        for n in range(size // page // 3, size // page // 3 + 20):
            f.seek(n * page)
            f.write(bytes((i * 7 + 13) % 256 for i in range(page)))
    before = cli.db.read_bytes()
    one_line_error(cli("check", "--app", APP_SPEC), str(cli.db))
    one_line_error(cli("stats", "--database", cli.db, "--json"), str(cli.db), "corrupt")
    assert cli.db.read_bytes() == before


def run_litejobs(*args: str, cwd: Path, env: dict[str, str],
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "litejobs", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def test_run_refuses_a_database_other_than_the_apps(cli) -> None:
    other = cli.dir / "other.db"
    env = {"LITEJOBS_TEST_DB": str(cli.db)}
    proc = run_litejobs("run", "--app", APP_SPEC, "--database", other, cwd=cli.dir, env=env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(other) in proc.stderr and str(cli.db) in proc.stderr
    assert not other.exists()
    proc = run_litejobs("run", "--app", APP_SPEC, cwd=cli.dir,
                        env={**env, "LITEJOBS_DATABASE": str(other)})
    assert proc.returncode != 0
    assert str(other) in proc.stderr and str(cli.db) in proc.stderr


def processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (ours: same user, readable)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue  # exited meanwhile, or not ours
    return found


@pytest.mark.sqlite_only("a file that is not a SQLite database")
def test_run_refusing_a_file_leaves_no_worker_behind(cli) -> None:
    """Workers start while the file is checked; a refused file must not leave them running."""
    bad = cli.dir / "notes.db"
    bad.write_bytes(b"these are my notes, not a database\n" * 100)
    before = bad.read_bytes()
    value = f"refused-{os.getpid()}-{time.monotonic_ns()}"
    marker = f"LITEJOBS_TEST_MARK={value}"
    env = {"LITEJOBS_TEST_DB": str(bad), "LITEJOBS_TEST_MARK": value}
    proc = run_litejobs("run", "--app", APP_SPEC, "--workers", "3", cwd=cli.dir, env=env)
    assert proc.returncode != 0
    assert "not a SQLite database" in proc.stderr and "Traceback" not in proc.stderr
    assert bad.read_bytes() == before
    assert processes_with_env(marker) == []


# --- enqueue ---------------------------------------------------------------------------------


def test_enqueue_prints_the_id_alone(cli) -> None:
    result = cli.ok("enqueue", "cli.add", "--app", APP_SPEC, "--args", "[1, 2]")
    assert result.stdout.strip().isdigit()
    assert result.stdout == result.stdout.strip() + "\n"
    job = cli.app().get_job(int(result.stdout))
    assert (job.task, job.args, job.kwargs, job.state, job.queue) == (
        "cli.add", [1, 2], {}, State.QUEUED, "default")

    second = cli.ok("enqueue", "cli.mail", "--args", '["a@b.c"]', "--kwargs",
                    '{"subject": "hi"}', env={"LITEJOBS_APP": APP_SPEC})
    job2 = cli.app().get_job(int(second.stdout))
    assert job2.id == job.id + 1
    assert (job2.task, job2.queue, job2.priority, job2.kwargs) == (
        "cli.mail", "mail", 5, {"subject": "hi"})


def test_enqueue_json_prints_the_job_object(cli) -> None:
    result = cli.ok("enqueue", "cli.add", "--app", APP_SPEC, "--args", "[3]", "--kwargs",
                    '{"b": 4}', "--delay", "60", "--queue", "slow", "--priority", "-3",
                    "--json")
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    assert JOB_FIELDS <= set(data)
    assert (data["task"], data["args"], data["kwargs"], data["queue"], data["priority"],
            data["state"], data["attempt"], data["error"]) == (
        "cli.add", [3], {"b": 4}, "slow", -3, "scheduled", 0, None)
    run_at = datetime.fromisoformat(data["run_at"])
    created = datetime.fromisoformat(data["created_at"])
    assert 59 <= (run_at - created).total_seconds() <= 61
    assert cli.app().get_job(data["id"]).to_dict() == data


def test_enqueue_key_is_idempotent(cli) -> None:
    first = cli.ok("enqueue", "cli.add", "--app", APP_SPEC, "--args", "[1]", "--key", "k1")
    second = cli.ok("enqueue", "cli.add", "--app", APP_SPEC, "--args", "[2]", "--key", "k1")
    assert first.stdout == second.stdout
    assert cli.app().stats()["states"]["queued"] == 1


def test_enqueue_refuses_an_unknown_task(cli) -> None:
    text = one_line_error(cli("enqueue", "cli.nope", "--app", APP_SPEC), "cli.nope")
    assert "unknown task" in text and "cli.add" in text
    assert cli.untouched() or cli.app().stats()["states"]["queued"] == 0


@pytest.mark.parametrize(("flag", "value", "fragment"), [
    ("--args", "[1,", "JSON"),
    ("--args", '{"a": 1}', "JSON array"),
    ("--kwargs", "[1]", "JSON object"),
])
def test_enqueue_refuses_bad_json(cli, flag, value, fragment) -> None:
    one_line_error(cli("enqueue", "cli.add", "--app", APP_SPEC, flag, value), fragment)
    assert cli.untouched() or cli.app().stats()["states"]["queued"] == 0


def test_enqueue_refuses_a_database_other_than_the_apps(cli) -> None:
    other = cli.dir / "other.db"
    one_line_error(cli("enqueue", "cli.add", "--app", APP_SPEC, "--database", other),
                   str(other), str(cli.db))
    assert not other.exists()


def test_enqueue_without_an_app_is_refused(cli) -> None:
    one_line_error(cli("enqueue", "cli.add", "--database", cli.db), "no app")


# --- jobs ------------------------------------------------------------------------------------


def test_jobs_json_filters_and_limit(cli) -> None:
    app = cli.app()
    ids = [app.enqueue("cli.add", args=[i], kwargs={"b": i}).id for i in range(5)]
    mail = app.enqueue("cli.mail", args=["x@y.z"], queue="mail").id
    assert app.get_job(ids[1]).cancel()

    data = json.loads(cli.ok("jobs", "--database", cli.db, "--json").stdout)
    assert isinstance(data, list) and len(data) == 6
    for item in data:
        assert JOB_FIELDS <= set(item), set(item)
    assert [d["id"] for d in data] == [mail, *reversed(ids)]  # newest first
    by_id = {d["id"]: d for d in data}
    assert by_id[ids[3]]["args"] == [3] and by_id[ids[3]]["kwargs"] == {"b": 3}
    assert by_id[ids[1]]["state"] == "cancelled" and by_id[ids[1]]["error"] == "cancelled"
    assert by_id[mail]["queue"] == "mail"
    assert datetime.fromisoformat(by_id[mail]["created_at"]).tzinfo is not None

    cancelled = json.loads(cli.ok("jobs", "--database", cli.db, "--state", "cancelled",
                                  "--json").stdout)
    assert [d["id"] for d in cancelled] == [ids[1]]
    queued = json.loads(cli.ok("jobs", "--database", cli.db, "--state", "queued",
                               "--json").stdout)
    assert {d["id"] for d in queued} == {*ids, mail} - {ids[1]}
    limited = json.loads(cli.ok("jobs", "--database", cli.db, "--limit", "2", "--json").stdout)
    assert [d["id"] for d in limited] == [mail, ids[4]]
    by_task = json.loads(cli.ok("jobs", "--database", cli.db, "--task", "cli.mail",
                                "--json").stdout)
    assert [d["id"] for d in by_task] == [mail]
    none = json.loads(cli.ok("jobs", "--database", cli.db, "--state", "running",
                             "--json").stdout)
    assert none == []
    usage_error(cli("jobs", "--database", cli.db, "--state", "bogus"), "bogus")


def test_jobs_table_and_app_from_environment(cli) -> None:
    app = cli.app()
    job = app.enqueue("cli.add", args=[1])
    result = cli.ok("jobs", env={"LITEJOBS_APP": APP_SPEC})
    assert str(job.id) in result.output and "cli.add" in result.output
    assert "queued" in result.output


def test_jobs_without_a_database_is_refused(cli) -> None:
    one_line_error(cli("jobs"), "no database")


# --- show ------------------------------------------------------------------------------------


def test_show_json_has_attempts_oldest_first(cli) -> None:
    app = cli.app()
    job = app.enqueue("cli.add", args=[1, 2])
    t0 = time.time()
    claim(app, t0)
    app.store.write(lambda tx: tx.fail(job.id, 1, "ConnectionError: down", "tb", "sup:w1", t0,
                                       t0 + 1, retry_at=t0 + 1))
    claim(app, t0 + 2)
    app.store.write(lambda tx: tx.succeed(job.id, 2, "3", "sup:w1", t0 + 2, t0 + 3))

    data = json.loads(cli.ok("show", job.id, "--database", cli.db, "--json").stdout)
    assert JOB_FIELDS <= set(data)
    assert (data["id"], data["state"], data["attempt"]) == (job.id, "succeeded", 2)
    attempts = data["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    for a in attempts:
        assert ATTEMPT_FIELDS <= set(a)
    assert [a["outcome"] for a in attempts] == ["failed", "succeeded"]
    assert attempts[0]["error"] == "ConnectionError: down"
    assert attempts[1]["error"] is None
    first_start = datetime.fromisoformat(attempts[0]["started_at"])
    first_end = datetime.fromisoformat(attempts[0]["finished_at"])
    if isinstance(cli.db, Path):
        assert first_start.timestamp() == pytest.approx(t0, abs=1e-3)
        assert first_end.timestamp() == pytest.approx(t0 + 1, abs=1e-3)
    else:  # times on the server's clock, the given ones kept as distances (docs/postgres.md)
        assert first_end.timestamp() - first_start.timestamp() == pytest.approx(1, abs=1e-3)
        assert abs(first_start.timestamp() - t0) < 5

    text = cli.ok("show", job.id, "--database", cli.db).output
    assert "succeeded" in text and "attempt 1: failed" in text


def test_show_running_job_lists_the_running_attempt(cli) -> None:
    app = cli.app()
    job = app.enqueue("cli.add", args=[1])
    claim(app, time.time())
    data = json.loads(cli.ok("show", job.id, "--database", cli.db, "--json").stdout)
    assert data["state"] == "running"
    assert [(a["attempt"], a["outcome"], a["finished_at"]) for a in data["attempts"]] == [
        (1, "running", None)]


def test_show_queued_job_has_no_attempts(cli) -> None:
    job = cli.app().enqueue("cli.add", args=[1])
    data = json.loads(cli.ok("show", job.id, "--database", cli.db, "--json").stdout)
    assert data["attempts"] == []


def test_show_missing_job(cli) -> None:
    cli.app().enqueue("cli.add", args=[1])
    one_line_error(cli("show", "999", "--database", cli.db), "999")
    one_line_error(cli("show", "999", "--database", cli.db, "--json"), "999")
    usage_error(cli("show", "abc", "--database", cli.db), "abc")


def test_show_missing_job_as_a_real_process(cli) -> None:
    cli.app().enqueue("cli.add", args=[1])
    proc = run_litejobs("show", "4242", "--database", cli.db, cwd=cli.dir, env={})
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "4242" in lines[0], proc.stderr


# --- retry and cancel ------------------------------------------------------------------------


def test_retry_a_failed_job(cli) -> None:
    app = cli.app()
    job_id = make_failed(app)
    result = cli.ok("retry", job_id, "--database", cli.db)
    assert str(job_id) in result.output
    job = app.get_job(job_id)
    assert job.state is State.QUEUED
    assert job.error is None
    # it can really run again: attempt 2 may be claimed
    assert claim(app, time.time(), queue="to-fail")["attempt"] == 2
    assert [a.outcome for a in job.attempts()] == ["failed", "running"]


def test_retry_refuses_a_queued_job(cli) -> None:
    job = cli.app().enqueue("cli.add", args=[1])
    one_line_error(cli("retry", job.id, "--database", cli.db), "queued")
    assert cli.app().get_job(job.id).state is State.QUEUED
    one_line_error(cli("retry", "777", "--database", cli.db), "777")


def test_retry_a_cancelled_job(cli) -> None:
    job = cli.app().enqueue("cli.add", args=[1])
    assert job.cancel()
    cli.ok("retry", job.id, "--database", cli.db)
    assert cli.app().get_job(job.id).state is State.QUEUED


def test_cancel(cli) -> None:
    app = cli.app()
    job = app.enqueue("cli.add", args=[1])
    result = cli.ok("cancel", job.id, "--database", cli.db)
    assert "cancelled" in result.output
    assert app.get_job(job.id).state is State.CANCELLED
    one_line_error(cli("cancel", job.id, "--database", cli.db), "already ended")
    one_line_error(cli("cancel", "555", "--database", cli.db), "555")
    assert app.get_job(job.id).state is State.CANCELLED


def test_cancel_a_scheduled_job_through_the_app_env(cli) -> None:
    job = cli.app().enqueue("cli.add", args=[1], delay=3600)
    cli.ok("cancel", job.id, env={"LITEJOBS_APP": APP_SPEC})
    assert cli.app().get_job(job.id).state is State.CANCELLED


# --- stats -----------------------------------------------------------------------------------


def test_stats_json_equals_app_stats(cli) -> None:
    app = cli.app()
    expected_empty = app.stats()  # opens (creates) the database
    empty = json.loads(cli.ok("stats", "--database", cli.db, "--json").stdout)
    assert empty == expected_empty
    app.enqueue("cli.add", args=[1])
    app.enqueue("cli.add", args=[2], delay=60)
    app.enqueue("cli.mail", args=["a"], queue="mail").cancel()
    make_failed(app)
    out = cli.ok("stats", "--database", cli.db, "--json").stdout
    data = json.loads(out)
    expected = app.stats()
    assert data == expected
    assert out.strip() == json.dumps(expected)
    assert data["states"]["failed"] == 1 and data["queues"]["mail"]["cancelled"] == 1
    assert data["queues"]["to-fail"]["failed"] == 1
    table = cli.ok("stats", "--database", cli.db).output
    assert "mail" in table and "default" in table


def test_read_commands_refuse_a_missing_database_without_creating_it(cli, tmp_path) -> None:
    missing = tmp_path / "typo.db"
    for args in (["stats"], ["jobs"], ["show", "1"], ["queues"]):
        result = cli(*args, "--database", str(missing))
        assert result.exit_code != 0
        assert "no database at" in result.output and str(missing) in result.output
        assert not missing.exists()
