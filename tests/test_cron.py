"""Cron schedules (DST, zones, validation) and the ticker's run_once(now) with a given clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import litejobs
from litejobs.cron import Schedule, entry_from_spec
from litejobs.store import Tx
from litejobs.ticker import Ticker, build_entries


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def take(schedule: Schedule, after: str, n: int) -> list[str]:
    return [i.strftime("%Y-%m-%dT%H:%M:%S") for i in
            itertools.islice(schedule.instants(utc(after)), n)]


# --- schedules ------------------------------------------------------------------------------


def test_plain_utc_schedule_and_aliases() -> None:
    assert take(Schedule("*/15 * * * *"), "2026-01-01T00:07:00", 3) == [
        "2026-01-01T00:15:00", "2026-01-01T00:30:00", "2026-01-01T00:45:00"]
    assert take(Schedule("@hourly"), "2026-01-01T00:07:00", 2) == [
        "2026-01-01T01:00:00", "2026-01-01T02:00:00"]
    assert take(Schedule("@daily"), "2026-01-01T00:00:00", 1) == ["2026-01-02T00:00:00"]
    assert take(Schedule("@weekly"), "2026-01-01T00:00:00", 1) == ["2026-01-04T00:00:00"]
    assert take(Schedule("@monthly"), "2026-01-01T00:00:00", 1) == ["2026-02-01T00:00:00"]
    assert take(Schedule("@yearly"), "2026-01-01T00:00:00", 1) == ["2027-01-01T00:00:00"]


def test_six_fields_have_seconds_last() -> None:
    assert take(Schedule("* * * * * */20"), "2026-01-01T00:00:00", 3) == [
        "2026-01-01T00:00:20", "2026-01-01T00:00:40", "2026-01-01T00:01:00"]


def test_strictly_after_the_given_moment() -> None:
    assert take(Schedule("0 * * * *"), "2026-01-01T05:00:00", 1) == ["2026-01-01T06:00:00"]


def test_spring_forward_missing_time_fires_once_at_the_jump() -> None:
    # Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:30 does not exist.
    s = Schedule("30 2 * * *", "Europe/Berlin")
    assert take(s, "2026-03-27T12:00:00", 3) == [
        "2026-03-28T01:30:00", "2026-03-29T01:00:00", "2026-03-30T00:30:00"]


def test_spring_forward_merges_with_a_fire_due_at_the_same_instant() -> None:
    # 02:00 and 02:30 do not exist; both land on the jump, where 03:00 also fires: one fire.
    s = Schedule("*/30 * * * *", "Europe/Berlin")
    assert take(s, "2026-03-29T00:15:00", 3) == [
        "2026-03-29T00:30:00", "2026-03-29T01:00:00", "2026-03-29T01:30:00"]


def test_fall_back_repeated_time_fires_once_at_first_occurrence() -> None:
    # Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:30 happens twice.
    s = Schedule("30 2 * * *", "Europe/Berlin")
    assert take(s, "2026-10-24T12:00:00", 2) == ["2026-10-25T00:30:00", "2026-10-26T01:30:00"]


def test_hour_star_entries_fire_in_both_repeated_hours() -> None:
    s = Schedule("*/30 * * * *", "Europe/Berlin")
    assert take(s, "2026-10-24T23:45:00", 6) == [
        "2026-10-25T00:00:00", "2026-10-25T00:30:00",  # 02:00, 02:30 CEST
        "2026-10-25T01:00:00", "2026-10-25T01:30:00",  # 02:00, 02:30 CET
        "2026-10-25T02:00:00", "2026-10-25T02:30:00"]
    # Starting inside the first pass still yields the whole second pass.
    assert take(s, "2026-10-25T00:40:00", 2) == ["2026-10-25T01:00:00", "2026-10-25T01:30:00"]


def test_lord_howe_half_hour_shift() -> None:
    # Lord Howe falls back 30 minutes (02:00 +11 → 01:30 +10:30) on 2026-04-05.
    s = Schedule("45 1 * * *", "Australia/Lord_Howe")
    got = take(s, "2026-04-03T00:00:00", 3)
    assert got == ["2026-04-03T14:45:00", "2026-04-04T14:45:00", "2026-04-05T15:15:00"]
    every = Schedule("*/15 * * * *", "Australia/Lord_Howe")
    assert take(every, "2026-04-04T14:20:00", 4) == [
        "2026-04-04T14:30:00", "2026-04-04T14:45:00", "2026-04-04T15:00:00",
        "2026-04-04T15:15:00"]


def test_new_york_spring_gap() -> None:
    s = Schedule("30 2 * * *", "America/New_York")
    # 2026-03-08 02:00 EST → 03:00 EDT at 07:00 UTC.
    assert take(s, "2026-03-07T12:00:00", 2) == ["2026-03-08T07:00:00", "2026-03-09T06:30:00"]


@pytest.mark.parametrize("expression, message", [
    ("0 0 30 2 *", "never fires"),
    ("61 * * * *", "not a valid cron expression"),
    ("* * * *", "has 4 fields"),
    ("hello", "has 1 fields"),
])
def test_invalid_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(expression)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        Schedule("* * * * *", "Mars/Olympus")


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="misfire must be one of"):
        entry_from_spec("x", "* * * * *", "t", "UTC", [], {}, {"misfire": "sometimes"})
    with pytest.raises(ValueError, match="overlap must be one of"):
        entry_from_spec("x", "* * * * *", "t", "UTC", [], {}, {"overlap": "maybe"})
    with pytest.raises(ValueError, match="catchup must be"):
        entry_from_spec("x", "* * * * *", "t", "UTC", [], {}, {"catchup": -1})
    with pytest.raises(ValueError, match="unknown option"):
        entry_from_spec("x", "* * * * *", "t", "UTC", [], {}, {"colour": "red"})


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
EXPRESSIONS = ["*/30 * * * *", "0 * * * *", "30 2 * * *", "15 1,2,3 * * *", "0 2 * * 0",
               "*/20 1-3 * * *", "45 * * * *", "0 0,12 * * *"]


def _wall_matches(schedule: Schedule, wall: datetime) -> bool:
    from croniter import croniter

    return bool(croniter.match(schedule.expanded, wall))


@settings(max_examples=20, deadline=None)
@given(zone=st.sampled_from(ZONES), expression=st.sampled_from(EXPRESSIONS),
       start_day=st.integers(min_value=0, max_value=364))
def test_property_two_years_increasing_unique_none_missed(zone: str, expression: str,
                                                          start_day: int) -> None:
    """Over two simulated years: instants strictly increase, none twice, none missed.

    "Missed" is checked against a brute-force walk over every minute of real time: each
    minute whose local wall time matches must be covered by a fire at that instant, or — for a
    repeated wall time in an entry whose hour is not ``*`` — by the fire at its first
    occurrence; every fire must be such a minute or the jump of a spring-forward gap.
    """
    schedule = Schedule(expression, zone)
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=start_day)
    end = start + timedelta(days=730)
    fires = []
    for instant in schedule.instants(start):
        if instant > end:
            break
        fires.append(instant)
    assert all(a < b for a, b in itertools.pairwise(fires))
    assert len(set(fires)) == len(fires)
    fire_set = set(fires)
    # Brute force over a window around each zone transition and a sample of ordinary days.
    transitions = _transitions(tz, start, end)
    windows = [(t - timedelta(hours=3), t + timedelta(hours=3)) for t in transitions]
    windows.append((start, start + timedelta(days=1)))
    for lo, hi in windows:
        lo = max(lo, start + timedelta(minutes=1))
        hi = min(hi, end - timedelta(minutes=1))
        t = lo.replace(second=0, microsecond=0)
        while t <= hi:
            local = t.astimezone(tz)
            wall = local.replace(tzinfo=None)
            if _wall_matches(schedule, wall):
                first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
                repeated = wall.replace(tzinfo=tz, fold=1).astimezone(UTC) != first
                if repeated and not schedule.hour_star:
                    assert first in fire_set, f"{wall} (first occurrence) missed"
                else:
                    assert t in fire_set, f"{t} ({wall} local) missed"
            t += timedelta(minutes=1)
        for f in fires:
            if lo <= f <= hi:
                wall = f.astimezone(tz).replace(tzinfo=None)
                assert _wall_matches(schedule, wall) or f in transitions, f"stray fire {f}"


def _transitions(tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    out = []
    t = start
    prev = t.astimezone(tz).utcoffset()
    while t < end:
        nxt = t + timedelta(hours=1)
        off = nxt.astimezone(tz).utcoffset()
        if off != prev:
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == off:
                    hi = mid
                else:
                    lo = mid
            out.append(hi.replace(microsecond=0))
            prev = off
        t = nxt
    return out


# --- the ticker -----------------------------------------------------------------------------


def make_app(tmp_path: Path, **options: object) -> litejobs.App:
    app = litejobs.App(tmp_path / "cron.db")

    @app.cron("*/10 * * * *", name="every10", **options)
    def every10() -> None:
        return None

    return app


def ticker(app: litejobs.App) -> Ticker:
    return Ticker(app, app.store, build_entries(app))


def fires(app: litejobs.App) -> list[tuple[str, float, str, int | None]]:
    conn = app.store.connection()
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT entry, instant, outcome, job_id FROM cron_fires ORDER BY instant")]


def ts(text: str) -> float:
    return utc(text).timestamp()


def test_new_entry_fires_from_now_on_and_each_instant_once(tmp_path: Path) -> None:
    app = make_app(tmp_path, overlap="allow")
    t = ticker(app)
    assert t.run_once(ts("2026-05-01T10:05:00")).fired == 0  # registers; owes nothing
    assert t.run_once(ts("2026-05-01T10:09:59")).fired == 0
    assert t.run_once(ts("2026-05-01T10:10:00")).fired == 1
    assert t.run_once(ts("2026-05-01T10:10:00.5")).fired == 0  # same instant again
    assert t.run_once(ts("2026-05-01T10:20:01")).fired == 1
    rows = fires(app)
    assert [(r[1], r[2]) for r in rows] == [(ts("2026-05-01T10:10:00"), "fired"),
                                            (ts("2026-05-01T10:20:00"), "fired")]
    jobs = app.store.list_jobs()
    assert len(jobs) == 2
    assert {j["scheduled_at"] for j in jobs} == {ts("2026-05-01T10:10:00"),
                                                ts("2026-05-01T10:20:00")}
    assert t.next_instant(ts("2026-05-01T10:20:01")) == ts("2026-05-01T10:30:00")


def test_two_tickers_on_one_file_never_fire_an_instant_twice(tmp_path: Path) -> None:
    app = make_app(tmp_path, overlap="allow")
    a, b = ticker(app), ticker(app)
    a.run_once(ts("2026-05-01T10:05:00"))
    for minute in range(10, 60, 10):
        now = ts(f"2026-05-01T10:{minute}:00")
        a.run_once(now)
        b.run_once(now)
    # A second ticker that lags behind still finds the instants taken.
    assert len(app.store.list_jobs()) == 5
    assert all(r[2] == "fired" for r in fires(app))


def test_misfire_latest_fires_the_newest_missed_instant_within_catchup(tmp_path: Path) -> None:
    app = make_app(tmp_path, misfire="latest", catchup=1800, overlap="allow")
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    result = t.run_once(ts("2026-05-01T11:05:00"))  # down for an hour: 6 instants missed
    assert (result.fired, result.skipped) == (1, 5)
    rows = fires(app)
    assert [r[2] for r in rows] == ["skipped_misfire"] * 5 + ["fired"]
    assert rows[-1][1] == ts("2026-05-01T11:00:00")


def test_misfire_latest_outside_catchup_fires_nothing(tmp_path: Path) -> None:
    app = make_app(tmp_path, misfire="latest", catchup=60, overlap="allow")
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    result = t.run_once(ts("2026-05-01T11:05:00"))
    assert (result.fired, result.skipped) == (0, 6)
    assert app.store.list_jobs() == []


def test_misfire_all_fires_every_missed_instant_within_catchup(tmp_path: Path) -> None:
    app = make_app(tmp_path, misfire="all", catchup=1800, overlap="allow")
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    result = t.run_once(ts("2026-05-01T11:05:00"))
    # 10:10 … 11:00 missed; those within 30 min of 11:05 (10:40, 10:50, 11:00) fire.
    assert (result.fired, result.skipped) == (3, 3)
    assert sorted(j["scheduled_at"] for j in app.store.list_jobs()) == [
        ts("2026-05-01T10:40:00"), ts("2026-05-01T10:50:00"), ts("2026-05-01T11:00:00")]


def test_misfire_skip_fires_only_on_time_instants(tmp_path: Path) -> None:
    app = make_app(tmp_path, misfire="skip", overlap="allow")
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    assert t.run_once(ts("2026-05-01T10:10:02")).fired == 1  # 2 s late: on time
    result = t.run_once(ts("2026-05-01T10:25:00"))  # 10:20 seen 5 min late: missed
    assert (result.fired, result.skipped) == (0, 1)


def test_overlap_skip_records_the_skip_while_previous_job_pending(tmp_path: Path) -> None:
    app = make_app(tmp_path)  # overlap = "skip" by default
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    assert t.run_once(ts("2026-05-01T10:10:00")).fired == 1
    result = t.run_once(ts("2026-05-01T10:20:00"))  # the 10:10 job is still queued
    assert (result.fired, result.skipped) == (0, 1)
    assert fires(app)[-1][2] == "skipped_overlap"
    job = app.store.list_jobs()[0]
    app.store.cancel(job["id"], "test", ts("2026-05-01T10:25:00"))
    assert t.run_once(ts("2026-05-01T10:30:00")).fired == 1


def test_overlap_queue_waits_for_the_previous_job(tmp_path: Path) -> None:
    app = make_app(tmp_path, overlap="queue", misfire="all", catchup=7200)
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    assert t.run_once(ts("2026-05-01T10:10:00")).fired == 1
    assert t.run_once(ts("2026-05-01T10:20:00")).fired == 0  # waits; nothing recorded
    assert len(fires(app)) == 1
    first = app.store.list_jobs()[0]
    app.store.cancel(first["id"], "test", ts("2026-05-01T10:21:00"))
    assert t.run_once(ts("2026-05-01T10:21:00")).fired == 1  # the owed 10:20 instant
    jobs = app.store.list_jobs()
    assert jobs[0]["scheduled_at"] == ts("2026-05-01T10:20:00")


def test_clock_stepped_back_fires_no_instant_twice(tmp_path: Path) -> None:
    app = make_app(tmp_path, overlap="allow")
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    t.run_once(ts("2026-05-01T11:00:00"))
    before = len(app.store.list_jobs())
    for minute in range(0, 60, 10):  # the wall clock goes back an hour
        t.run_once(ts(f"2026-05-01T10:{minute:02d}:05"))
    assert len(app.store.list_jobs()) == before


def test_changed_schedule_starts_afresh(tmp_path: Path) -> None:
    app = make_app(tmp_path, overlap="allow")
    ticker(app).run_once(ts("2026-05-01T10:00:30"))
    ticker(app).run_once(ts("2026-05-01T10:10:00"))
    app2 = litejobs.App(tmp_path / "cron.db")

    @app2.cron("*/5 * * * *", name="every10", overlap="allow")
    def every10() -> None:
        return None

    t2 = ticker(app2)
    assert t2.run_once(ts("2026-05-01T11:00:00")).fired == 0  # new schedule owes nothing
    assert t2.run_once(ts("2026-05-01T11:05:00")).fired == 1


def test_cron_job_carries_its_instant_args_queue_and_priority(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "cron.db")

    @app.cron("0 * * * *", name="report", args=[1, "x"], kwargs={"k": True}, queue="reports",
              priority=5)
    def report(a: int, b: str, k: bool) -> None:
        return None

    t = ticker(app)
    t.run_once(ts("2026-05-01T10:30:00"))
    t.run_once(ts("2026-05-01T11:00:00"))
    (job,) = app.store.list_jobs()
    assert (job["queue"], job["priority"]) == ("reports", 5)
    assert (job["args"], job["kwargs"]) == ('[1,"x"]', '{"k":true}')
    assert job["scheduled_at"] == ts("2026-05-01T11:00:00")


def test_unknown_task_in_a_config_entry_is_refused(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "cron.db")
    app.add_cron_table("nightly", {"schedule": "0 3 * * *", "task": "no.such.task"},
                       "litejobs.toml")
    with pytest.raises(ValueError, match=r"cron entry 'nightly' .*unknown task 'no\.such\.task'"):
        build_entries(app)


def test_fire_writes_instant_and_job_in_one_transaction(tmp_path: Path) -> None:
    app = make_app(tmp_path, overlap="allow")
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    entry = t.entries[0]

    def fire_then_fail(tx: Tx) -> None:
        tx.cron_fire(entry.name, ts("2026-05-01T10:10:00"),
                     t.job_for(entry, ts("2026-05-01T10:10:00"), ts("2026-05-01T10:10:00")),
                     "fired", ts("2026-05-01T10:10:00"))
        raise RuntimeError("crash mid-fire")

    with pytest.raises(RuntimeError):
        app.store.write(fire_then_fail)
    assert fires(app) == [] and app.store.list_jobs() == []
    assert t.run_once(ts("2026-05-01T10:10:01")).fired == 1


def test_renamed_entry_is_a_new_entry_and_a_removed_one_stops(tmp_path: Path) -> None:
    app = make_app(tmp_path, overlap="allow")
    t = ticker(app)
    t.run_once(ts("2026-05-01T10:00:30"))
    assert t.run_once(ts("2026-05-01T10:10:00")).fired == 1
    renamed = litejobs.App(tmp_path / "cron.db")

    @renamed.cron("*/10 * * * *", name="every10_v2", overlap="allow")
    def every10() -> None:
        return None

    t2 = ticker(renamed)
    # A new name owes nothing from before it was first seen.
    assert t2.run_once(ts("2026-05-01T10:35:00")).fired == 0
    assert t2.run_once(ts("2026-05-01T10:40:00")).fired == 1
    assert {r[0] for r in fires(renamed)} == {"every10", "every10_v2"}
    # The old name is no longer configured: nothing fires for it any more.
    assert [r for r in fires(renamed) if r[0] == "every10"] == [
        ("every10", ts("2026-05-01T10:10:00"), "fired", 1)]


def test_a_rolling_deploy_with_two_schedules_fires_both_not_neither(tmp_path: Path) -> None:
    # Old and new supervisors run side by side for a while with different schedules for one
    # entry. Before: each reset the entry's history at its every tick, so neither ever fired.
    old_app = make_app(tmp_path, overlap="allow")  # "every10": */10 * * * *
    new_app = litejobs.App(tmp_path / "cron.db")

    @new_app.cron("5-59/10 * * * *", name="every10", overlap="allow")
    def every10() -> None:
        return None

    old, new = ticker(old_app), ticker(new_app)
    old.run_once(ts("2026-05-01T10:00:30"))
    new.run_once(ts("2026-05-01T10:01:00"))
    for minute in range(5, 60, 5):
        now = ts(f"2026-05-01T10:{minute:02d}:00")
        (new if minute % 10 else old).run_once(now)
    fired = sorted(r[1] for r in fires(old_app) if r[2] == "fired")
    assert fired == [ts(f"2026-05-01T10:{m:02d}:00") for m in range(5, 60, 5)], fired
