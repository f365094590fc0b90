"""The batched paths against real SQLite files: bulk enqueue split inside SQLite (same rows,
same refusals as one by one), the rows handed back without reading them, claims of many jobs
per statement, and many successes recorded by one statement with fencing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import litejobs
from litejobs.calls import BATCH_MIN
from litejobs.serialization import MAX_DEPTH, PayloadTooLarge
from litejobs.store import QueueLimits

DEFAULT = [QueueLimits("default")]
COLUMNS = ("task", "queue", "state", "priority", "args", "kwargs", "key", "run_at",
           "scheduled_at", "max_attempts", "timeout", "expires_at", "concurrency_key",
           "concurrency_limit", "attempt")


@pytest.fixture
def app(tmp_path: Path) -> litejobs.App:
    return litejobs.App(tmp_path / "jobs.db")


@pytest.fixture
def send(app: litejobs.App) -> litejobs.Task:
    @app.task(name="mail.send", queue="mail", priority=3, retries=4, timeout=9.5)
    def send(to, subject="", *rest, **extra):
        return None

    return send


def rows(app: litejobs.App) -> list[dict]:
    app.store.connection()  # the file and its schema exist even if nothing was written
    conn = apsw.Connection(app.store.path)
    try:
        names = ("id", *COLUMNS)
        cur = conn.execute(f"SELECT {', '.join(names)} FROM jobs ORDER BY id")
        return [dict(zip(names, r, strict=True)) for r in cur]
    finally:
        conn.close()


def comparable(row: dict) -> dict:
    """A row without what differs between two enqueues of the same call (id, times)."""
    return {k: v for k, v in row.items() if k not in ("id", "run_at", "scheduled_at")}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(st.lists(json_values, max_size=3),
                                st.dictionaries(st.sampled_from(["a", "b", "ü", "x y"]),
                                                json_values, max_size=2)),
                      min_size=BATCH_MIN, max_size=30))
def test_bulk_rows_equal_one_by_one_rows(tmp_path_factory, calls) -> None:
    """Whatever the arguments, a batch stores byte-for-byte what one-by-one enqueues store,
    in the order given, and the handles it returns say the same as a fresh read."""
    base = tmp_path_factory.mktemp("bulk")
    one, many = litejobs.App(base / "one.db"), litejobs.App(base / "many.db")
    tasks = {}
    for app in (one, many):
        @app.task(name="t.echo", queue="q", retries=2)
        def echo(*args, **kwargs):
            return None
        tasks[app] = echo
    for args, kwargs in calls:
        tasks[one].enqueue(*args, **kwargs)
    jobs = many.enqueue_many([tasks[many].prepare(*a, **k) for a, k in calls])
    stored_one, stored_many = rows(one), rows(many)
    assert [comparable(r) for r in stored_many] == [comparable(r) for r in stored_one]
    assert [j.id for j in jobs] == [r["id"] for r in stored_many]
    for job, (args, kwargs) in zip(jobs, calls, strict=True):
        assert job.args == json.loads(json.dumps(args))
        assert job.kwargs == json.loads(json.dumps(kwargs))
        fresh = many.get_job(job.id)
        assert (job.state, job.queue, job.priority, job.task, job.run_at) == (
            fresh.state, fresh.queue, fresh.priority, fresh.task, fresh.run_at)
    one.store.close()
    many.store.close()


def test_bulk_keeps_order_across_mixed_calls(app, send) -> None:
    """Plain runs, calls with options and keyed calls interleave; ids follow the list."""
    calls = ([send.prepare(f"a{i}") for i in range(20)]
             + [send.options(priority=-5).prepare("opt"), send.options(key="k").prepare("key")]
             + [send.prepare(f"b{i}", subject="s") for i in range(20)]
             + [send.options(delay=60).prepare("later")])
    jobs = app.enqueue_many(calls)
    stored = rows(app)
    assert [j.id for j in jobs] == [r["id"] for r in stored]
    assert [json.loads(r["args"])[0] for r in stored] == (
        [f"a{i}" for i in range(20)] + ["opt", "key"] + [f"b{i}" for i in range(20)]
        + ["later"])
    by_arg = {json.loads(r["args"])[0]: r for r in stored}
    assert by_arg["opt"]["priority"] == -5 and by_arg["a3"]["priority"] == 3
    assert by_arg["key"]["key"] == "k" and by_arg["a3"]["key"] is None
    assert by_arg["b7"]["kwargs"] == '{"subject":"s"}' and by_arg["a7"]["kwargs"] == "{}"
    assert by_arg["later"]["state"] == "scheduled" and by_arg["a0"]["state"] == "queued"
    assert by_arg["a0"]["max_attempts"] == 5 and by_arg["a0"]["timeout"] == 9.5
    assert by_arg["a0"]["queue"] == "mail"


def test_bulk_rows_get_the_time_of_their_own_enqueue(app, send) -> None:
    """The options a task's first plain call caches must not carry that call's time."""
    first = send.enqueue("first")
    time.sleep(0.05)
    before = time.time()
    jobs = app.enqueue_many([send.prepare(i) for i in range(BATCH_MIN * 2)])
    assert all(j.created_at.timestamp() >= before for j in jobs)
    assert all(j.run_at.timestamp() >= before for j in jobs)
    stored = rows(app)
    assert all(r["run_at"] >= before for r in stored if r["id"] != first.id)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (object(), ["'to' (position 0)", "cannot be stored as JSON"]),
        (float("nan"), ["'to' (position 0)"]),
        ("\udcff", ["'to' (position 0)"]),
        (_nested(MAX_DEPTH + 1), ["'to' (position 0)", "nested more than"]),
    ],
    ids=["object", "nan", "lone-surrogate", "too-deep"],
)
def test_a_bad_call_in_a_batch_is_named_and_nothing_is_written(app, send, bad, words) -> None:
    calls = [send.prepare(f"ok{i}") for i in range(30)]
    calls[17] = send.prepare(bad)
    with pytest.raises(TypeError) as exc:
        app.enqueue_many(calls)
    for word in words:
        assert word in str(exc.value)
    assert "nothing was enqueued" in str(exc.value)
    assert rows(app) == []


def test_deep_but_allowed_arguments_go_in_a_batch(app, send) -> None:
    deep = _nested(MAX_DEPTH)
    jobs = app.enqueue_many([send.prepare(deep) for _ in range(BATCH_MIN)])
    assert [j.args for j in jobs] == [[deep]] * BATCH_MIN
    assert len(rows(app)) == BATCH_MIN


def test_payload_cap_holds_per_call_in_a_batch(tmp_path) -> None:
    app = litejobs.App(tmp_path / "jobs.db", max_payload=1000)

    @app.task(name="t")
    def t(blob):
        return None

    # together far over the cap, each under it: accepted
    jobs = app.enqueue_many([t.prepare("x" * 900) for _ in range(20)])
    assert len(jobs) == 20
    # one call over it: refused by name, nothing written
    calls = [t.prepare("x" * 10) for _ in range(20)]
    calls[5] = t.prepare("x" * 1200)
    with pytest.raises(PayloadTooLarge, match="over the cap of 1000 bytes"):
        app.enqueue_many(calls)
    assert len(rows(app)) == 20


def test_non_string_keyword_names_are_refused_in_a_batch(app, send) -> None:
    calls = [send.prepare("a", subject=str(i)) for i in range(20)]
    calls[3] = litejobs.task.Prepared("mail.send", ("a",), {1: "x"}, calls[0].options,
                                      calls[0].defaults, calls[0].param_names)
    with pytest.raises(TypeError, match="keyword names must be str"):
        app.enqueue_many(calls)
    assert rows(app) == []


def test_enqueue_many_takes_any_iterable(app, send) -> None:
    jobs = app.enqueue_many(send.prepare(i) for i in range(50))
    assert [j.args for j in jobs] == [[i] for i in range(50)]


def test_enqueue_many_of_one_prepared_call_says_to_wrap_it(app, send) -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        app.enqueue_many(send.prepare(1))
    assert rows(app) == []


def test_claim_many_keeps_priority_order_per_worker(app, send) -> None:
    """Jobs claimed together still reach each worker best first."""
    jobs = [send.options(priority=p).enqueue(p) for p in (1, 5, 2, 9, 0, 7, 3, 8)]
    now = time.time()
    claimed = app.store.write(lambda tx: tx.claim(["s:w1", "s:w2"] * 4,
                                                  [QueueLimits("mail")], now, 30))
    assert [r["args"] for r in claimed] == ["[9]", "[8]", "[7]", "[5]", "[3]", "[2]", "[1]",
                                            "[0]"]
    assert {r["leased_by"] for r in claimed[0::2]} == {"s:w1"}
    assert {r["leased_by"] for r in claimed[1::2]} == {"s:w2"}
    assert all(r["attempt"] == 1 for r in claimed)
    assert {j.id for j in jobs} == {r["id"] for r in claimed}
    assert app.stats()["states"]["running"] == 8


def test_succeed_many_records_live_attempts_and_fences_stale_ones(app, send) -> None:
    for i in range(6):
        send.enqueue(i)
    now = time.time()
    claimed = app.store.write(lambda tx: tx.claim(["s:w1"] * 6, [QueueLimits("mail")], now,
                                                  30))
    stale = claimed[2]
    # its lease was lost and the job claimed again by someone else: attempt 2 runs now
    app.store.write(lambda tx: tx.interrupt(stale["id"], 1, "test", "s:w1", now, now))
    again = app.store.write(lambda tx: tx.claim(["s:w9"], [QueueLimits("mail")], now, 30))
    assert [r["id"] for r in again] == [stale["id"]]
    done = [(r["id"], r["attempt"], json.dumps({"n": r["id"], "s": "é\"\n"}), "s:w1", now,
             now + 0.5) for r in claimed]
    recorded = app.store.write(lambda tx: tx.succeed_many(done))
    assert recorded == 5
    for r in claimed:
        job = app.get_job(r["id"])
        if r["id"] == stale["id"]:
            assert job.state.value == "running" and job.attempt == 2
            outcomes = [(a.attempt, a.outcome) for a in job.attempts()]
            assert (1, "stale") in outcomes
        else:
            assert job.state.value == "succeeded"
            assert job.result() == {"n": r["id"], "s": "é\"\n"}
            last = job.attempts()[-1]
            assert (last.outcome, last.worker) == ("succeeded", "s:w1")
            assert last.finished_at == pytest.approx(now + 0.5)
