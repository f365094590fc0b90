"""Cron entries stored at run time (issue 14, item 5): app.schedule/unschedule/schedules,
`litejobs cron add/remove/list/next/trigger`, the ticker serving them beside the TOML and
decorator entries, and real `litejobs run` processes picking them up while they run. Each test
of a database runs on both stores (the ``database`` fixture)."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import litejobs
from litejobs.cli import main
from litejobs.cron import Schedule
from litejobs.errors import ScheduleClash
from litejobs.ticker import Ticker, build_entries
from tests.conftest import REPO, SupervisorProcess, clean_env, one_line_error, wait_for

APP = "tests.apps.schedapp:app"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ts(text: str) -> float:
    return utc(text).timestamp()


def make_app(path: Path | str, **kwargs: Any) -> litejobs.App:
    app = litejobs.App(path, **kwargs)

    @app.task(name="t.log")
    def log(tag: str = "") -> None:
        return None

    return app


def fires(app: litejobs.App, entry: str | None = None) -> list[tuple[str, float, str]]:
    query = "SELECT entry, instant, outcome FROM cron_fires ORDER BY instant, entry"
    if "://" in app.database:  # the PostgreSQL store: the same table, read through its pool
        rows = [(r["entry"], r["instant"], r["outcome"]) for r in app.store._read(query)]
    else:
        rows = [(r[0], r[1], r[2]) for r in app.store.connection().execute(query)]
    return [r for r in rows if entry is None or r[0] == entry]


def start_at(app: litejobs.App, name: str, since: float) -> None:
    """Move an entry's history to start at ``since`` (the ticker tests run a fake clock)."""
    key = next(e.key for e in Ticker(app, app.store, build_entries(app)).entries
               if e.name == name) if name in app.cron_specs else None
    if key is None:
        row = app.store.get_schedule(name)
        assert row is not None
        key = Schedule(row["schedule"], row["timezone"]).expanded + " " + row["timezone"]
    app.store.write(lambda tx: tx.cron_reset(name, key, since))


# --- the API ----------------------------------------------------------------------------------


def test_schedule_round_trip(database: str) -> None:
    app = make_app(database)

    @app.cron("0 7 * * *", name="morning")
    def morning() -> None:
        return None

    item = app.schedule("five", "*/5 * * * *", "t.log", args=["x"], queue="q", misfire="all",
                        catchup=120)
    assert item["name"] == "five" and item["source"] == "stored"
    assert (item["schedule"], item["task"], item["args"], item["queue"]) == (
        "*/5 * * * *", "t.log", ["x"], "q")
    assert item["misfire"] == "all" and item["catchup"] == 120 and len(item["next"]) == 3
    assert item["last_fire"] is None
    # a task this process does not have is accepted (a producer need not import every task)
    app.schedule("remote", "@hourly", "other.service.task", kwargs={"n": 1})
    listed = {e["name"]: e for e in app.schedules()}
    assert {n: e["source"] for n, e in listed.items()} == {
        "morning": "decorator", "five": "stored", "remote": "stored"}
    assert listed["remote"]["kwargs"] == {"n": 1}
    # another App on the file sees them
    assert {e["name"] for e in make_app(database).schedules()} == {"five", "remote"}
    # replace: one entry, new settings
    app.schedule("five", "*/5 * * * *", "t.log", args=["y"])
    assert [r["args"] for r in app.store.schedules() if r["name"] == "five"] == ['["y"]']
    assert app.unschedule("five") is True
    assert app.unschedule("five") is False
    assert [e["name"] for e in app.schedules()] == ["morning", "remote"]


def test_replace_keeps_history_and_a_changed_schedule_starts_afresh(database: str) -> None:
    app = make_app(database)
    app.schedule("e", "*/5 * * * *", "t.log")
    app.store.write(lambda tx: tx.cron_advance("e", 1000.0, None))
    first = {r["name"]: r for r in app.store.cron_entries()}["e"]
    app.schedule("e", "*/5 * * * *", "t.log", args=["other"])  # same schedule: goes on
    same = {r["name"]: r for r in app.store.cron_entries()}["e"]
    assert (same["since"], same["last_instant"]) == (first["since"], 1000.0)
    before = time.time()
    app.schedule("e", "*/7 * * * *", "t.log")  # changed: from now on
    changed = {r["name"]: r for r in app.store.cron_entries()}["e"]
    assert changed["schedule"].startswith("*/7") and changed["since"] >= before
    assert app.unschedule("e") and app.store.cron_entries() == []


@pytest.mark.parametrize("kwargs, fragment", [
    ({"schedule": "61 * * * *"}, "not a valid cron expression"),
    ({"schedule": "* * *"}, "has 3 fields"),
    ({"schedule": "0 0 30 2 *"}, "never fires"),
    ({"timezone": "Europe/Nowhere"}, "unknown time zone 'Europe/Nowhere'"),
    ({"misfire": "often"}, "misfire must be one of"),
    ({"overlap": "never"}, "overlap must be one of"),
    ({"catchup": -1}, "catchup"),
    ({"colour": "red"}, "unknown option(s) colour"),
    ({"args": [datetime(2026, 1, 1)]}, "cannot be stored as JSON"),
    ({"args": "abc"}, "args must be a list"),
    ({"kwargs": {"n": float("nan")}}, "kwargs['n']"),
    ({"queue": "a\nb"}, "control characters"),
    ({"priority": 1000}, "priority"),
    ({"args": ["x" * 500]}, "100 bytes"),
    ({"name": ""}, "cron entry name"),
])
def test_invalid_entries_are_refused_before_anything_is_written(
        database: str, kwargs: dict[str, Any], fragment: str) -> None:
    app = make_app(database, max_payload=100)
    call: dict[str, Any] = {"name": "bad", "schedule": "* * * * *", "task": "t.log", **kwargs}
    with pytest.raises(ValueError) as info:
        app.schedule(**call)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message
    assert app.store.schedules() == [] and app.store.cron_entries() == []


def test_a_toml_or_decorator_name_is_refused(tmp_path: Path, database: str) -> None:
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f'database = {json.dumps(database)}\n[cron.nightly]\n'
                   'schedule = "0 3 * * *"\ntask = "t.log"\n')
    app = litejobs.App.from_config(cfg)

    @app.cron("@hourly", name="hourly")
    def hourly() -> None:
        return None

    for name, where in (("nightly", "litejobs.toml"), ("hourly", "@app.cron")):
        with pytest.raises(ScheduleClash, match=where) as info:
            app.schedule(name, "* * * * *", "t.log")
        assert isinstance(info.value, ValueError)
        with pytest.raises(ScheduleClash, match="remove it there"):
            app.unschedule(name)
    assert app.store.schedules() == []


# --- the ticker -------------------------------------------------------------------------------


def test_an_entry_added_at_half_past_fires_at_the_next_minute_and_not_after_removal(
        database: str) -> None:
    app = make_app(database)
    app.schedule("m", "* * * * *", "t.log", overlap="allow")
    start_at(app, "m", ts("2026-05-01T12:00:30"))
    t = Ticker(app, app.store, [])
    assert t.run_once(ts("2026-05-01T12:00:59")).fired == 0
    assert t.next_instant(ts("2026-05-01T12:00:59")) == ts("2026-05-01T12:01:00")
    assert t.run_once(ts("2026-05-01T12:01:00")).fired == 1
    assert app.unschedule("m")
    # the ticker still holds the entry (it reads the table at most once a second), but the
    # fire's transaction sees it gone
    assert t.run_once(ts("2026-05-01T12:02:00")).fired == 0
    assert fires(app) == [("m", ts("2026-05-01T12:01:00"), "fired")]
    assert t.refresh() and t.entries == []


def test_a_changed_entry_never_fires_its_old_self(database: str) -> None:
    app = make_app(database)
    app.schedule("m", "* * * * *", "t.log", args=["old"], overlap="allow")
    start_at(app, "m", ts("2026-05-01T12:00:00"))
    t = Ticker(app, app.store, [])
    assert t.run_once(ts("2026-05-01T12:01:00")).fired == 1
    app.schedule("m", "* * * * *", "t.log", args=["new"], overlap="allow")  # same schedule
    assert t.run_once(ts("2026-05-01T12:02:00")).fired == 0  # stale: skipped, reload asked
    assert t.reload_at == 0.0 and t.refresh(time.monotonic())
    assert t.run_once(ts("2026-05-01T12:02:00")).fired == 1
    args = [j["args"] for j in app.store.list_jobs()]
    assert args == ['["new"]', '["old"]']


def test_stored_entries_unknown_tasks_are_logged_once_and_left_out(
        database: str, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(database)
    app.schedule("ghost", "* * * * *", "no.such.task")
    app.schedule("fine", "* * * * *", "t.log", overlap="allow")
    t = Ticker(app, app.store, [])
    with caplog.at_level("ERROR", logger="litejobs"):
        assert t.refresh()
        app.schedule("other", "@daily", "t.log")
        assert t.refresh()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert "cron entry 'ghost' (stored): unknown task 'no.such.task'" in errors[0]
    assert sorted(e.name for e in t.entries) == ["fine", "other"]


@pytest.mark.parametrize("expression, start, end", [
    ("30 2 * * *", "2026-03-27T22:00:00", "2026-03-30T03:00:00"),  # spring forward
    ("*/30 * * * *", "2026-03-28T22:00:00", "2026-03-29T03:00:00"),
    ("30 2 * * *", "2026-10-23T22:00:00", "2026-10-26T03:00:00"),  # fall back
    ("*/30 * * * *", "2026-10-24T22:00:00", "2026-10-25T03:00:00"),
])
def test_a_stored_berlin_entry_over_dst_fires_as_a_declared_one(
        database: str, expression: str, start: str, end: str) -> None:
    app = make_app(database)
    app.cron(expression, name="declared", timezone="Europe/Berlin", overlap="allow")(
        app.tasks["t.log"])
    app.schedule("stored", expression, "t.log", timezone="Europe/Berlin", overlap="allow")
    for name in ("declared", "stored"):
        start_at(app, name, ts(start))
    t = Ticker(app, app.store, build_entries(app))
    now = ts(start)
    while now <= ts(end):
        t.run_once(now)
        now += 300
    declared = [(i, o) for _, i, o in fires(app, "declared")]
    stored = [(i, o) for _, i, o in fires(app, "stored")]
    expected = [i.timestamp() for i in itertools.takewhile(
        lambda i: i.timestamp() <= ts(end), Schedule(expression, "Europe/Berlin").instants(
            utc(start)))]
    assert expected
    assert declared == stored == [(i, "fired") for i in expected]


# --- the CLI ----------------------------------------------------------------------------------


class Cli:
    def __init__(self, tmp_path: Path, database: str) -> None:
        self.db = database
        self.cfg = tmp_path / "litejobs.toml"
        self.cfg.write_text(f'database = {json.dumps(self.db)}\n[cron.nightly]\n'
                            'schedule = "0 3 * * *"\ntask = "t.log"\n'
                            'timezone = "Europe/Berlin"\n')
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(main, [*args, "--config", str(self.cfg)])

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return result


@pytest.fixture
def cli(tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    for var in ("LITEJOBS_DATABASE", "LITEJOBS_APP", "LITEJOBS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return Cli(tmp_path, database)


def test_cli_add_list_next_trigger_remove(cli: Cli) -> None:
    out = cli.ok("cron", "add", "report", "--schedule", "0 7 * * 1-5", "--task", "t.log",
                 "--args", '["r"]', "--timezone", "Europe/Berlin", "--queue", "reports",
                 "--misfire", "skip", "--catchup", "600", "--overlap", "queue").output
    assert out.startswith("stored cron entry report: 0 7 * * 1-5 (Europe/Berlin)"), out
    items = {i["name"]: i for i in json.loads(cli.ok("cron", "list", "--json").output)}
    assert {n: i["source"] for n, i in items.items()} == {"nightly": "toml", "report": "stored"}
    report = items["report"]
    assert (report["args"], report["queue"], report["misfire"], report["catchup"],
            report["overlap"]) == (["r"], "reports", "skip", 600.0, "queue")
    text = cli.ok("cron", "list").output
    assert "report: 0 7 * * 1-5 (Europe/Berlin) → t.log" in text and "[stored]" in text
    assert "[toml]" in text
    nxt = cli.ok("cron", "next", "report", "--after", "2026-03-27T00:00:00Z", "--count", "2",
                 "--json").output
    assert json.loads(nxt) == ["2026-03-27T06:00:00Z", "2026-03-30T05:00:00Z"]  # CET, CEST
    job_id = int(cli.ok("cron", "trigger", "report").output)
    job = litejobs.App(cli.db).get_job(job_id)
    assert job is not None and (job.task, job.queue, job.args) == ("t.log", "reports", ["r"])
    assert cli.ok("cron", "remove", "report").output.strip() == "removed cron entry report"
    one_line_error(cli("cron", "remove", "report"), "no stored cron entry named 'report'")
    one_line_error(cli("cron", "remove", "nightly"), "litejobs.toml", "remove it there")
    assert [i["name"] for i in json.loads(cli.ok("cron", "list", "--json").output)] == [
        "nightly"]


@pytest.mark.parametrize("args, fragments", [
    (["--schedule", "61 * * * *"], ["not a valid cron expression"]),
    (["--args", "[1,"], ["--args '[1,' is not valid JSON"]),
    (["--kwargs", "[1]"], ["kwargs must be a table"]),
    (["--timezone", "Mars/Olympus"], ["unknown time zone"]),
    (["--misfire", "often"], ["misfire must be one of"]),
    (["--name-clash"], ["nightly", "litejobs.toml"]),
])
def test_cli_add_refusals_are_one_line(cli: Cli, args: list[str],
                                       fragments: list[str]) -> None:
    name = "nightly" if args == ["--name-clash"] else "x"
    flags = {"--schedule": "* * * * *", "--task": "t.log"}
    extra = [] if args == ["--name-clash"] else args
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        flags[flag] = value
    argv = [a for pair in flags.items() for a in pair]
    one_line_error(cli("cron", "add", name, *argv), *fragments)
    assert litejobs.App(cli.db).store.schedules() == []


def test_cli_next_of_a_stored_berlin_entry_equals_the_toml_ones(cli: Cli) -> None:
    cli.ok("cron", "add", "twin", "--schedule", "0 3 * * *", "--task", "t.log",
           "--timezone", "Europe/Berlin")
    for after in ("2026-03-27T00:00:00Z", "2026-10-23T00:00:00Z"):
        toml = cli.ok("cron", "next", "nightly", "--after", after, "--count", "4").output
        stored = cli.ok("cron", "next", "twin", "--after", after, "--count", "4").output
        assert toml == stored and len(toml.splitlines()) == 4


# --- real supervisors -------------------------------------------------------------------------


class Run:
    def __init__(self, tmp_path: Path, database: str) -> None:
        self.tmp = tmp_path
        self.db = database
        self.fires_log = tmp_path / "jobs.db.fires"
        self.cfg = tmp_path / "empty.toml"
        self.cfg.write_text("")
        self.procs: list[SupervisorProcess] = []
        self.app = litejobs.App(self.db)  # a producer without the tasks

    def start(self) -> SupervisorProcess:
        log = self.tmp / f"supervisor-{len(self.procs)}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "litejobs", "run", "--app", APP, "--workers", "2",
                 "--config", str(self.cfg)], cwd=REPO,
                env=clean_env(self.db, LITEJOBS_TEST_FIRES=str(self.fires_log)),
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                start_new_session=True)
        sup = SupervisorProcess(proc, log, time.monotonic())
        self.procs.append(sup)
        wait_for(lambda: "serving" in sup.output() or not sup.running(), 30,
                 "litejobs run to start serving", details=sup.output)
        assert sup.running(), sup.output()
        return sup

    def fires(self, tag: str | None = None) -> list[dict[str, Any]]:
        try:
            text = self.fires_log.read_text()
        except FileNotFoundError:
            return []
        out = [json.loads(line) for line in text.splitlines(keepends=True)
               if line.endswith("\n")]
        return [f for f in out if tag is None or f["tag"] == tag]

    def logs(self) -> str:
        return "\n".join(p.output() for p in self.procs)


@pytest.fixture
def run(tmp_path: Path, database: str):  # type: ignore[no-untyped-def]
    r = Run(tmp_path, database)
    yield r
    for p in r.procs:
        p.kill_group()


def once_each(fires: list[dict[str, Any]]) -> list[float]:
    instants = [f["instant"] for f in fires]
    assert len(instants) == len(set(instants)), f"an instant fired twice: {sorted(instants)}"
    return sorted(instants)


def test_a_running_supervisor_serves_added_changed_and_removed_entries(run: Run) -> None:
    sup = run.start()
    added = time.time()
    run.app.schedule("tick", "* * * * * *", "sched.log", args=["a"], overlap="allow")
    run.app.schedule("ghost", "* * * * * *", "no.such.task")
    wait_for(lambda: len(run.fires("a")) >= 3, 20, "three fires of the added entry",
             details=sup.output)
    assert once_each(run.fires("a"))[0] > added
    assert sup.output().count("unknown task 'no.such.task'") == 1, sup.output()
    # changed: every other second, another argument; the old one never fires again
    changing = time.time()
    run.app.schedule("tick", "* * * * * */2", "sched.log", args=["b"], overlap="allow")
    changed = time.time()
    wait_for(lambda: len(run.fires("b")) >= 2, 20, "two fires of the changed entry",
             details=sup.output)
    assert all(i < changed for i in once_each(run.fires("a")))
    b = once_each(run.fires("b"))
    assert all(i % 2 == 0 and i > changing for i in b), (b, changing)
    # removed: nothing after
    assert run.app.unschedule("tick")
    removed = time.time()
    wait_for(lambda: time.time() - removed > 2.5, 5, "instants to pass after the removal")
    assert all(f["instant"] < removed for f in run.fires())
    assert sup.running()
    sup.send(signal.SIGTERM)
    assert sup.wait(15) == 0


def test_two_supervisors_fire_each_stored_instant_once(run: Run) -> None:
    a, b = run.start(), run.start()
    run.app.schedule("tick", "* * * * * *", "sched.log", args=["t"], overlap="allow")
    wait_for(lambda: len(run.fires("t")) >= 6, 25, "six fires", details=run.logs)
    a.send(signal.SIGTERM)
    b.send(signal.SIGTERM)
    assert a.wait(15) == 0 and b.wait(15) == 0
    instants = once_each(run.fires("t"))
    assert instants[-1] - instants[0] == len(instants) - 1  # none missed either
