"""Values refused at the door: options, CLI flags, litejobs.toml keys and cron entries are
bounded where they come in, with one line naming the value, so nothing stored breaks a later
read or fire; and the smaller CLI/config defects of issue 11 (11b)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import litejobs
from litejobs.cli import main
from litejobs.config import load_config
from litejobs.errors import ConfigError
from litejobs.job import iso, to_datetime
from litejobs.task import Backoff

ENV_VARS = ("LITEJOBS_DATABASE", "LITEJOBS_APP", "LITEJOBS_WORKERS", "LITEJOBS_CONFIG",
            "LITEJOBS_GRACE", "LITEJOBS_DURABILITY", "LITEJOBS_DEBUG")
BIG = 2**64


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def app(clean_env: Path) -> litejobs.App:
    return litejobs.App(clean_env / "jobs.db")


def invoke(*args: object, env: dict[str, str] | None = None, input: str | None = None
           ) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


def one_line_error(result: Result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.output.strip()
    assert "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def run_litejobs(*args: object, cwd: Path, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "litejobs", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=60)


# --- item 16: options of enqueue, task and .options() -----------------------------------------

FAR = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-14)))


@pytest.mark.parametrize(("options", "fragment"), [
    ({"delay": 1e300}, "delay"),
    ({"delay": 200 * 365 * 86400}, "delay"),
    ({"run_at": 1e300}, "run_at"),
    ({"run_at": FAR}, "run_at"),
    ({"expires": 1e300}, "expires"),
    ({"timeout": 1e300}, "timeout"),
    ({"retries": BIG}, "retries"),
    ({"priority": BIG}, "priority"),
    ({"queue": "mail\x7f"}, "queue"),
    ({"run_at": datetime(9999, 12, 31, 20, tzinfo=UTC), "expires": 86400}, "year 9999"),
])
def test_out_of_range_call_options_are_refused(app, options, fragment) -> None:
    @app.task(name="t.noop")
    def noop() -> None:
        pass

    for attempt in (lambda: noop.options(**options).enqueue(),
                    lambda: app.enqueue("t.noop", **options)):
        with pytest.raises(ValueError, match=fragment) as info:
            attempt()
        assert "\n" not in str(info.value)
    assert app.store.count_matching(["scheduled", "queued"]) == 0


@pytest.mark.parametrize(("options", "fragment"), [
    ({"timeout": 1e300}, "timeout"),
    ({"unique_for": float("inf")}, "unique_for"),
    ({"unique_for": 1e300}, "unique_for"),
    ({"retries": BIG}, "retries"),
    ({"concurrency_limit": BIG}, "concurrency_limit"),
])
def test_out_of_range_task_options_are_refused(app, options, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        app.task(name="t.x", **options)


@pytest.mark.parametrize("kwargs", [{"base": float("nan")}, {"max": float("inf")},
                                    {"max": 1e300}, {"factor": float("nan")}])
def test_backoff_must_be_finite_and_bounded(kwargs) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)


def test_the_largest_accepted_values_can_be_read_back(app) -> None:
    @app.task(name="t.far", timeout=100 * 365 * 86400, unique_for=100 * 365 * 86400)
    def far() -> None:
        pass

    job = far.options(delay=100 * 365 * 86400, expires=1.0).enqueue()
    assert job.run_at.year >= 2120
    json.dumps(job.refresh().to_dict())
    job = far.options(run_at=datetime(9999, 12, 31, 20, tzinfo=UTC), key="k").enqueue()
    assert job.run_at.year == 9999
    assert app.get_job(BIG) is None and app.get_job(-BIG) is None


def test_stored_times_a_datetime_cannot_show_are_clamped() -> None:
    # a row written before enqueue bounded run_at must still be listable
    assert to_datetime(1e300) == datetime.max.replace(tzinfo=UTC)
    assert iso(-1e300) is not None and iso(float("nan")) is not None


# --- items 16 and 7a: litejobs.toml and cron entries ------------------------------------------

BAD_FILES = [
    ('[cron.nightly]\nschedule = "@daily"\ntask = "t.x"\nargs = [nan]\n', "cron.nightly.args",
     4),
    ('[cron.nightly]\nschedule = "@daily"\ntask = "t.x"\nargs = [1979-05-27T07:32:00Z]\n',
     "cron.nightly.args", 4),
    ('[cron.nightly]\nschedule = "@daily"\ntask = "t.x"\nkwargs = { n = inf }\n',
     "cron.nightly.kwargs", 4),
    ('[cron.nightly]\nschedule = "@daily"\ntask = "t.x"\nqueue = "a\\nb"\n',
     "cron.nightly.queue", 4),
    ('[cron.nightly]\nschedule = "@daily"\ntask = "t.x"\ncatchup = nan\n',
     "cron.nightly.catchup", 4),
    ('[cron.nightly]\nschedule = "@daily"\ntask = "t.x"\ncatchup = 1e300\n',
     "cron.nightly.catchup", 4),
    ('[cron."a\\tb"]\nschedule = "@daily"\ntask = "t.x"\n', "cron.a\\tb", None),
    ("workers = 100000000000000000000\n", "'workers'", 1),
    ("crash_limit = 100000000000000000000\n", "'crash_limit'", 1),
    ('retention = "99999999999d"\n', "'retention'", 1),
    ('max_payload = "99999999999999999999GB"\n', "'max_payload'", 1),
    ('[queues."a\\nb"]\nconcurrency = 1\n', "queues.a\\nb", None),
    ("[queues.mail]\nconcurrency = 100000000000000000000\n", "queues.mail.concurrency", 2),
]


@pytest.mark.parametrize(("text", "key", "line"), BAD_FILES)
def test_config_values_are_bounded_with_file_line_and_key(clean_env, text, key, line) -> None:
    path = clean_env / "litejobs.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    message = str(info.value)
    assert "\n" not in message
    assert (f"{path}:{line}:" if line else str(path)) in message, message
    assert f"key '{key}'" in message or key in message, message


def test_check_and_run_refuse_the_same_files(clean_env) -> None:
    """`check` and `run` go through the same validation: each refuses these files with the
    same single line (run as a real process, as a deploy would)."""
    for text, _key, _line in (BAD_FILES[0], BAD_FILES[4], BAD_FILES[7]):
        path = clean_env / "litejobs.toml"
        path.write_text(text)
        checked = one_line_error(invoke("check", "--config", path))
        proc = run_litejobs("run", "--config", path, "--app", "nosuch:app", cwd=clean_env)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == checked, (proc.stderr, checked)


def test_app_cron_refuses_arguments_json_cannot_carry(app) -> None:
    @app.task(name="t.report")
    def report(day: object = None) -> None:
        pass

    for kwargs, key in (({"args": [datetime.now(UTC)]}, "args"),
                        ({"kwargs": {"n": float("nan")}}, "kwargs"),
                        ({"catchup": float("nan")}, "catchup"),
                        ({"queue": "a\nb"}, "queue")):
        with pytest.raises(ValueError, match=f"cron entry 'daily'.*{key}") as info:
            app.cron("@daily", name="daily", **kwargs)(report)
        assert "\n" not in str(info.value)
    assert "daily" not in app.cron_specs


# --- item 16: CLI flags and arguments ------------------------------------------------------


def test_cli_integers_past_64_bits_get_one_line(app, clean_env) -> None:
    app.enqueue("t.x")
    db = clean_env / "jobs.db"
    for args in (("show", BIG), ("explain", BIG), ("cancel", BIG), ("retry", BIG),
                 ("jobs", "--limit", BIG), ("retry", "--retries", BIG, "-y")):
        result = invoke(*args, "--database", db)
        assert result.exit_code != 0, (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, repr(result.exception))
        assert "Traceback" not in result.output
        assert "922337203685477580" in result.output, (args, result.output)  # 2**63 - 1


def test_cli_enqueue_delay_out_of_range_is_one_line(clean_env) -> None:
    app_file = clean_env / "delayapp.py"
    app_file.write_text(textwrap.dedent(f"""
        import litejobs
        app = litejobs.App({str(clean_env / "jobs.db")!r})

        @app.task(name="d.noop")
        def noop() -> None:
            pass
    """))
    for value in ("1e300", "inf", "nan"):
        one_line_error(invoke("enqueue", "d.noop", "--app", f"{app_file}:app", "--delay", value),
                       "delay")
    one_line_error(invoke("check", "--app", f"{app_file}:app",
                          env={"LITEJOBS_WORKERS": str(BIG)}), "LITEJOBS_WORKERS")
    sys.modules.pop("delayapp", None)


# --- 11b: retention shorter than unique_for ---------------------------------------------------


def test_check_warns_when_retention_is_shorter_than_unique_for(clean_env) -> None:
    app_file = clean_env / "windowapp.py"
    app_file.write_text(textwrap.dedent(f"""
        import litejobs
        app = litejobs.App({str(clean_env / "jobs.db")!r})

        @app.task(name="w.once", unique_for=30 * 86400)
        def once() -> None:
            pass
    """))
    (clean_env / "litejobs.toml").write_text(f'app = "{app_file}:app"\nretention = "7d"\n')
    result = invoke("check")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if "w.once" in line]
    assert len(warning) == 1, result.stderr
    assert "unique_for=2592000s" in warning[0] and "retention=604800s" in warning[0]
    sys.modules.pop("windowapp", None)


# --- 11b: App.from_config and the environment -------------------------------------------------


def test_app_from_config_honours_database_and_durability_env(clean_env, monkeypatch) -> None:
    path = clean_env / "litejobs.toml"
    path.write_text('database = "file.db"\ndurability = "full"\n')
    monkeypatch.setenv("LITEJOBS_DATABASE", str(clean_env / "env.db"))
    monkeypatch.setenv("LITEJOBS_DURABILITY", "fast")
    app = litejobs.App.from_config(path)
    assert app.path == str(clean_env / "env.db")
    assert app.durability == "fast" and app.store.durability == "fast"
    monkeypatch.delenv("LITEJOBS_DATABASE")
    monkeypatch.delenv("LITEJOBS_DURABILITY")
    app = litejobs.App.from_config(path)
    assert (app.path, app.durability) == (str(clean_env / "file.db"), "full")


# --- 11b: check and a missing directory -------------------------------------------------------


def test_check_fails_when_the_database_directory_is_missing(clean_env) -> None:
    missing = clean_env / "var" / "lib" / "jobs.db"
    one_line_error(invoke("check", "--database", missing), str(missing.parent), "create it")
    assert not missing.parent.exists()


# --- 11b: an import error in the app's module -------------------------------------------------


def test_missing_dependency_is_one_line_with_the_pip_hint(clean_env) -> None:
    app_file = clean_env / "depapp.py"
    app_file.write_text("import litejobs\n\nimport nosuchdep_xyz.sub  # noqa\n\n"
                        "app = litejobs.App('jobs.db')\n")
    proc = run_litejobs("check", "--app", f"{app_file}:app", cwd=clean_env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "ModuleNotFoundError" in lines[0] and f"{app_file}:3" in lines[0], lines[0]
    assert "pip install nosuchdep_xyz" in lines[0] and sys.executable in lines[0]
    proc = run_litejobs("check", "--app", f"{app_file}:app", cwd=clean_env,
                        env={"LITEJOBS_DEBUG": "1"})
    assert "Traceback" in proc.stderr and "pip install nosuchdep_xyz" in proc.stderr


def test_an_error_raised_by_the_app_module_is_one_line_with_file_and_line(clean_env) -> None:
    app_file = clean_env / "brokenapp.py"
    app_file.write_text("import litejobs\n\napp = litejobs.App('jobs.db')\n\n"
                        "SETTINGS = undefined_name + 1\n")
    for command in ("check", "run"):
        proc = run_litejobs(command, "--app", f"{app_file}:app", cwd=clean_env)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "NameError" in lines[0] and "undefined_name" in lines[0]
        assert f"{app_file}:5" in lines[0] and "pip install" not in lines[0]


def test_a_missing_app_module_keeps_the_project_directory_hint(clean_env) -> None:
    result = invoke("check", "--app", "no_such_project.jobs:app")
    text = one_line_error(result, "no_such_project", "project's directory")
    assert "pip install" not in text


# --- 11b: queues pause of an unknown name -----------------------------------------------------


def test_pausing_an_unknown_queue_is_refused_unless_created(app, clean_env) -> None:
    app.enqueue("t.x", queue="mail")
    db = clean_env / "jobs.db"
    one_line_error(invoke("queues", "pause", "mial", "--database", db), "'mial'", "mail",
                   "--create")
    one_line_error(invoke("queues", "resume", "mial", "--database", db), "'mial'")
    assert "mial" not in dict(app.store.queue_list())
    assert invoke("queues", "pause", "mail", "--database", db).exit_code == 0
    result = invoke("queues", "pause", "later", "--create", "--database", db)
    assert result.exit_code == 0, result.output
    assert dict(app.store.queue_list())["later"] is True


# --- 11b: purge --older-than ------------------------------------------------------------------


def test_purge_older_than_deletes_the_old_jobs_only(app, clean_env) -> None:
    old = [app.enqueue("t.x") for _ in range(3)]
    boundary = old[-1].created_at.timestamp()
    deadline = time.monotonic() + 5
    while time.time() <= boundary + 0.002:  # the next job must be created after the boundary
        assert time.monotonic() < deadline
    moment = datetime.fromtimestamp(boundary + 0.001, UTC).isoformat()
    new = [app.enqueue("t.x") for _ in range(2)]
    for job in old + new:
        job.cancel()
    db = clean_env / "jobs.db"
    result = invoke("purge", "--older-than", moment, "--database", db, input="n\n")
    assert "3 cancelled/failed/succeeded" not in result.output  # states in the given order
    assert "purge 3 succeeded/failed/cancelled job(s) created before" in result.output
    result = invoke("purge", "--older-than", moment, "-y", "--database", db)
    assert result.exit_code == 0, result.output
    assert "purge: 3 job(s)" in result.output
    assert [app.get_job(j.id) for j in old] == [None, None, None]
    assert all(app.get_job(j.id) is not None for j in new)
    # a duration: nothing is a day old yet
    result = invoke("purge", "--older-than", "1d", "-y", "--database", db)
    assert "nothing to purge" in result.output and "older than 1d" in result.output


def test_purge_since_says_it_matches_the_newest(app, clean_env) -> None:
    for _ in range(2):
        app.enqueue("t.x").cancel()
    result = invoke("purge", "--since", "7d", "--database", clean_env / "jobs.db", input="n\n")
    assert result.exit_code != 0  # aborted
    assert "created since" in result.output and "the newest" in result.output
    assert "--older-than 7d" in result.output
    assert app.store.count_matching(["cancelled"]) == 2


def test_check_and_run_refuse_cron_arguments_over_the_payload_cap(clean_env) -> None:
    """An entry whose arguments pass JSON but not the app's max_payload is refused at start,
    not at its first fire."""
    app_file = clean_env / "bigcron.py"
    app_file.write_text(textwrap.dedent(f"""
        import litejobs
        app = litejobs.App({str(clean_env / "jobs.db")!r}, max_payload=100)

        @app.cron("@daily", name="big", args=["x" * 500])
        def big(text: str) -> None:
            pass
    """))
    for command in ("check", "run"):
        proc = run_litejobs(command, "--app", f"{app_file}:app", cwd=clean_env)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "cron entry 'big'" in lines[0] and "100 bytes" in lines[0], (
            lines)


def test_an_unknown_enqueue_option_names_the_known_ones(app) -> None:
    with pytest.raises(TypeError, match=r"unknown enqueue option\(s\) dealy; known: .*delay"):
        app.enqueue("t.x", dealy=5)
