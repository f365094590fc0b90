"""The producer's API against a real SQLite file and a real PostgreSQL (tests with the ``app``
fixture run on both stores: the ``database`` fixture): enqueue and its validation,
idempotency, debounce, Job handles, stats, and the public surface."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import litejobs
from litejobs.job import State
from litejobs.serialization import PayloadTooLarge
from litejobs.store import QueueLimits
from tests.conftest import release_together

ALL_STATES = ["waiting", "scheduled", "queued", "running", "succeeded", "failed", "cancelled"]
EMPTY_STATS = {"states": dict.fromkeys(ALL_STATES, 0), "queues": {}}
DEFAULT = [QueueLimits("default")]


@pytest.fixture
def app(database: str) -> litejobs.App:
    return litejobs.App(database)


@pytest.fixture
def add(app: litejobs.App) -> litejobs.Task:
    @app.task(name="math.add")
    def add(a, b=0):
        return a + b

    return add


def counts(app: litejobs.App) -> dict[str, int]:
    return app.stats()["states"]


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def fail_job(app: litejobs.App, job_id: int) -> None:
    """Claim the job and record a final failure, as a worker would."""
    now = time.time()
    queue = QueueLimits(app.get_job(job_id).queue)
    rows = app.store.write(lambda tx: tx.claim(["w"], [queue], now, 30))
    assert [r["id"] for r in rows] == [job_id]
    assert app.store.write(lambda tx: tx.fail(job_id, rows[0]["attempt"], "boom", None, "w",
                                              now, now, retry_at=None))


# --- the public surface ----------------------------------------------------------------------


def test_public_names() -> None:
    expected = [
        "App", "Attempt", "Backoff", "ConfigError", "Job", "JobCancelled", "JobContext",
        "JobFailed", "JobTimeout", "LitejobsError", "Prepared", "State", "StorageError",
        "StorageFull", "Task", "WorkerDied", "__version__", "current_job",
        # workflows (API.md "Workflows, waits, progress and tags")
        "Step", "Then", "Token", "Workflow", "WorkflowRun", "chain", "chord", "group", "then",
        # HTTP (API.md "HTTP"): for receivers of signed deliveries
        "verify_signature",
    ]
    assert sorted(litejobs.__all__) == sorted(expected)
    assert len(litejobs.__all__) == len(set(litejobs.__all__))
    for name in expected:
        assert getattr(litejobs, name) is not None, name


def test_exception_tree() -> None:
    for exc in (litejobs.ConfigError, litejobs.StorageError, litejobs.JobFailed,
                litejobs.JobCancelled, litejobs.JobTimeout, litejobs.WorkerDied):
        assert issubclass(exc, litejobs.LitejobsError)
    assert issubclass(litejobs.StorageFull, litejobs.StorageError)
    assert issubclass(litejobs.State, str)
    assert litejobs.State.QUEUED == "queued"


def test_current_job_outside_a_task_raises() -> None:
    with pytest.raises(RuntimeError):
        litejobs.current_job()


# --- enqueue ---------------------------------------------------------------------------------


def test_enqueue_returns_committed_job(app, add, tmp_path) -> None:
    job = add.enqueue(1, b=2)
    assert isinstance(job, litejobs.Job)
    assert isinstance(job.id, int)
    assert job.state is State.QUEUED
    assert (job.task, job.queue, job.priority, job.attempt) == ("math.add", "default", 0, 0)
    assert (job.args, job.kwargs) == ([1], {"b": 2})
    assert job.run_at.tzinfo is not None and job.created_at.tzinfo is not None
    # committed: visible to an App in another connection
    other = litejobs.App(app.database)
    seen = other.get_job(job.id)
    assert seen is not None and seen.state is State.QUEUED and seen.args == [1]
    assert add(2, 3) == 5  # a plain call still runs inline
    assert app.get_job(job.id + 1000) is None


def test_the_store_opens_on_first_use_once_across_threads(tmp_path) -> None:
    app = litejobs.App(tmp_path / "jobs.db")
    assert app.path == str(tmp_path / "jobs.db")
    assert not (tmp_path / "jobs.db").exists()  # nothing opened by App() itself
    task = app.task(name="t.noop")(lambda: None)
    gate = threading.Barrier(8)
    seen: list[object] = []

    def first_enqueue() -> None:
        gate.wait(10)
        seen.append(app.store)
        task.enqueue()

    threads = [threading.Thread(target=first_enqueue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(seen) == 8 and all(s is seen[0] for s in seen)
    assert app.stats()["states"]["queued"] == 8


def test_a_bad_database_path_is_refused_by_app_at_once(tmp_path) -> None:
    for bad in ("", ":memory:", "file:jobs.db?mode=memory"):
        with pytest.raises(ValueError, match="must be a file path"):
            litejobs.App(bad)
    with pytest.raises(ValueError, match="durability must be"):
        litejobs.App(tmp_path / "jobs.db", durability="sometimes")


def test_bare_decorator_names_task_by_module_and_qualname(app) -> None:
    @app.task
    def work() -> None:
        pass

    assert work.name == f"{__name__}.test_bare_decorator_names_task_by_module_and_qualname." \
                        "<locals>.work"
    assert app.tasks[work.name] is work


def test_options_override_per_call(app, add) -> None:
    job = add.options(queue="fast", priority=7, retries=0, timeout=5).enqueue(1)
    row = app.store.get_job(job.id)
    assert (row["queue"], row["priority"], row["max_attempts"], row["timeout"]) == (
        "fast", 7, 1, 5.0)
    assert app.stats()["queues"]["fast"]["queued"] == 1


def test_enqueue_by_unregistered_name(app) -> None:
    job = app.enqueue("elsewhere.send_mail", args=["a@b.c"], kwargs={"subject": "hi"},
                      queue="mail", priority=3)
    assert "elsewhere.send_mail" not in app.tasks
    again = app.get_job(job.id)
    assert (again.task, again.queue, again.priority, again.state) == (
        "elsewhere.send_mail", "mail", 3, State.QUEUED)
    assert (again.args, again.kwargs) == (["a@b.c"], {"subject": "hi"})


def test_enqueue_args_must_be_a_list(app) -> None:
    with pytest.raises(TypeError, match="args must be a list"):
        app.enqueue("t.x", args="abc")
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        app.enqueue("t.x", kwargs=[1])
    assert app.stats() == EMPTY_STATS


def test_non_json_argument_names_task_and_argument(app) -> None:
    @app.task(name="reports.render")
    def render(title, when, *, fmt="pdf"):
        pass

    with pytest.raises(TypeError) as info:
        render.enqueue("Q3", datetime.now(UTC))
    message = str(info.value)
    assert "reports.render" in message and "'when'" in message

    with pytest.raises(TypeError) as info:
        render.enqueue("Q3", "now", fmt={1, 2})
    assert "reports.render" in str(info.value) and "'fmt'" in str(info.value)

    with pytest.raises(TypeError) as info:
        app.enqueue("reports.render", args=["Q3", b"bytes"])
    assert "reports.render" in str(info.value) and "'when'" in str(info.value)

    with pytest.raises(TypeError) as info:
        app.enqueue("not.registered", args=[1, object()])
    assert "not.registered" in str(info.value) and "1" in str(info.value)
    assert app.stats() == EMPTY_STATS


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1.0, math.nan], {"x": math.nan}])
def test_nan_and_infinity_refused(app, add, bad) -> None:
    with pytest.raises(TypeError, match=r"math.add.*'a'"):
        add.enqueue(bad)
    with pytest.raises(TypeError, match=r"math.add.*'b'"):
        add.enqueue(1, b=bad)
    assert app.stats() == EMPTY_STATS


def test_deeply_nested_value_refused(app, add) -> None:
    with pytest.raises(TypeError, match=r"math.add.*'a'.*nested"):
        add.enqueue(nested(100_000))
    with pytest.raises(TypeError, match=r"math.add.*'b'.*nested"):
        add.enqueue(1, b={"x": nested(100_000)})
    assert app.stats() == EMPTY_STATS


def at_depth(frames: int, fn):
    """Call ``fn`` from ``frames`` Python frames deeper than here."""
    return fn() if frames == 0 else at_depth(frames - 1, fn)


def in_thread(fn):
    """Call ``fn`` on a fresh thread: a shallow stack, like a script's top level."""
    out: dict = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.parametrize("depth", [50, 150, 300, 600, 900, 950, 980, 990, 1000, 2000])
def test_nesting_limit_does_not_depend_on_the_stack(app, add, depth) -> None:
    """Whether a value is accepted must not depend on how deep the caller's stack is, and what
    is accepted must decode anywhere (a worker reads it at another stack depth)."""
    value = nested(depth)
    outcomes = []
    for call in (lambda: in_thread(lambda: add.enqueue(value)),
                 lambda: at_depth(300, lambda: add.enqueue(value))):
        try:
            outcomes.append(call().id)
        except TypeError as exc:
            assert "math.add" in str(exc) and "nested" in str(exc)
            outcomes.append(None)
    assert (outcomes[0] is None) == (outcomes[1] is None), outcomes
    if outcomes[0] is None:
        assert depth > 100  # reasonable nesting is accepted
        assert app.stats() == EMPTY_STATS
        return
    for job_id in outcomes:
        assert at_depth(300, lambda job_id=job_id: app.get_job(job_id).args) == [value]
        assert in_thread(lambda job_id=job_id: app.get_job(job_id).args) == [value]


def test_nesting_cap_is_per_argument(app, add) -> None:
    from litejobs.serialization import MAX_DEPTH

    job = add.enqueue(nested(MAX_DEPTH), b={"k": nested(MAX_DEPTH - 1)})
    assert app.get_job(job.id).args == [nested(MAX_DEPTH)]
    with pytest.raises(TypeError, match=r"math.add.*'a'.*nested more than"):
        add.enqueue(nested(MAX_DEPTH + 1))
    with pytest.raises(TypeError, match=r"math.add.*'b'.*nested more than"):
        add.enqueue(1, b={"k": nested(MAX_DEPTH)})
    assert app.stats()["states"]["queued"] == 1


def test_nested_result_refused(app) -> None:
    from litejobs.serialization import dump_result

    assert json.loads(dump_result(nested(50))) == nested(50)
    with pytest.raises(TypeError, match="nested"):
        in_thread(lambda: dump_result(nested(990)))


def test_lone_surrogates_refused_by_argument(app, add) -> None:
    """os.fsdecode() of a non-UTF-8 file name gives one; SQLite text must be UTF-8."""
    with pytest.raises(TypeError, match=r"math.add.*'b'.*surrogates"):
        add.enqueue("fine", b=["x\udcff"])
    with pytest.raises(TypeError, match=r"math.add.*'a'.*surrogates"):
        add.enqueue({"name": "\ud800"})
    assert app.stats() == EMPTY_STATS


JSON_LEAVES = (st.none() | st.booleans() | st.integers()
               | st.floats(allow_nan=False, allow_infinity=False) | st.text())
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(JSON_VALUES, max_size=3),
       kwargs=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), JSON_VALUES,
                              max_size=3))
def test_json_values_round_trip(app, args, kwargs) -> None:
    job = app.enqueue("t.roundtrip", args=args, kwargs=kwargs)
    again = app.get_job(job.id)
    assert again.args == args
    assert again.kwargs == kwargs


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(codec=None, categories=["Cs", "Ll", "Nd"]),
                     max_size=6))
def test_any_string_is_refused_with_type_error_or_round_trips(app, value) -> None:
    before = app.stats()["states"]["queued"]
    try:
        job = app.enqueue("t.text", args=[value])
    except TypeError as exc:
        assert "t.text" in str(exc)
        assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
        assert app.stats()["states"]["queued"] == before
        return
    assert app.get_job(job.id).args == [value]


def test_keyword_names_must_be_strings(app) -> None:
    with pytest.raises(TypeError, match=r"t.kw.*keyword names must be str"):
        app.enqueue("t.kw", kwargs={1: "x"})
    assert app.stats() == EMPTY_STATS


def test_circular_value_refused(app, add) -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError, match=r"math.add.*'a'"):
        add.enqueue(loop)
    assert app.stats() == EMPTY_STATS


def test_oversized_payload_refused(app, add) -> None:
    big = "x" * (1024 * 1024)
    with pytest.raises(ValueError) as info:
        add.enqueue(big)
    assert isinstance(info.value, PayloadTooLarge)
    message = str(info.value)
    assert "math.add" in message and "1048576" in message and "nothing was enqueued" in message
    assert app.stats() == EMPTY_STATS
    # just under the cap is fine
    job = add.enqueue("x" * (1024 * 1024 - 100))
    assert len(app.get_job(job.id).args[0]) == 1024 * 1024 - 100


def test_max_payload_is_configurable(tmp_path) -> None:
    app = litejobs.App(tmp_path / "jobs.db", max_payload=64)
    with pytest.raises(PayloadTooLarge, match="64 bytes"):
        app.enqueue("t.x", args=["y" * 100])
    assert app.stats() == EMPTY_STATS
    assert app.enqueue("t.x", args=["y" * 10]).state is State.QUEUED


@pytest.mark.parametrize("priority", [101, -101, True, False, 1.5, "3"])
def test_bad_priority_refused(app, add, priority) -> None:
    with pytest.raises(ValueError, match="priority"):
        add.options(priority=priority).enqueue(1)
    with pytest.raises(ValueError, match="priority"):
        app.enqueue("t.x", priority=priority)
    with pytest.raises(ValueError, match="priority"):
        app.task(name="t.bad", priority=priority)(lambda: None)
    assert app.stats() == EMPTY_STATS


@pytest.mark.parametrize("priority", [-100, 0, 100])
def test_priority_bounds_accepted(app, add, priority) -> None:
    assert add.options(priority=priority).enqueue(1).priority == priority


def test_naive_run_at_refused(app, add) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add.options(run_at=datetime.now() + timedelta(minutes=5)).enqueue(1)
    assert app.stats() == EMPTY_STATS


def test_aware_run_at_schedules(app, add) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    job = add.options(run_at=when).enqueue(1)
    assert job.state is State.SCHEDULED
    if "://" in app.database:
        # PostgreSQL stores a given time as its distance from the enqueue, on the server's
        # clock (hosts' clocks may differ): the same instant within the call's time
        assert abs((app.get_job(job.id).run_at - when).total_seconds()) < 1.0
    else:
        assert app.get_job(job.id).run_at == when
    past = add.options(run_at=datetime.now(UTC) - timedelta(hours=1)).enqueue(2)
    assert past.state is State.QUEUED


def test_delay_and_run_at_together_refused(app, add) -> None:
    with pytest.raises(ValueError, match="not both"):
        add.options(delay=10, run_at=datetime.now(UTC)).enqueue(1)
    assert app.stats() == EMPTY_STATS


@pytest.mark.parametrize("delay", [-1, math.nan, math.inf, True])
def test_bad_delay_refused(app, add, delay) -> None:
    with pytest.raises(ValueError, match="delay"):
        add.options(delay=delay).enqueue(1)
    assert app.stats() == EMPTY_STATS


def test_delay_schedules(app, add) -> None:
    before = time.time()
    job = add.options(delay=30).enqueue(1)
    assert job.state is State.SCHEDULED
    assert before + 30 <= job.run_at.timestamp() <= time.time() + 30


# --- enqueue_many ----------------------------------------------------------------------------


def test_enqueue_many_writes_all_in_order(app, add) -> None:
    jobs = app.enqueue_many([add.prepare(i, b=i) for i in range(5)])
    assert [j.args for j in jobs] == [[i] for i in range(5)]
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    assert counts(app)["queued"] == 5
    assert app.enqueue_many([]) == []


def test_enqueue_many_is_one_transaction(app, add) -> None:
    calls = [add.prepare(1), add.prepare(2), add.prepare(object()), add.prepare(4)]
    with pytest.raises(TypeError, match=r"math.add"):
        app.enqueue_many(calls)
    assert app.stats() == EMPTY_STATS
    calls = [add.prepare(1), add.options(priority=500).prepare(2), add.prepare(3)]
    with pytest.raises(ValueError, match="priority"):
        app.enqueue_many(calls)
    assert app.stats() == EMPTY_STATS
    with pytest.raises(TypeError, match="prepare"):
        app.enqueue_many([add.prepare(1), (add, 2)])
    assert app.stats() == EMPTY_STATS


@pytest.mark.sqlite_only("a SQLite trigger makes the database refuse an item; "
                         "tests/postgres covers a refused statement")
def test_enqueue_many_rolls_back_when_the_database_refuses_an_item(app, add) -> None:
    """A failure inside the write (not in validation) also leaves nothing behind."""
    add.enqueue(0)  # create the schema
    app.store.connection().execute(
        "CREATE TRIGGER refuse_three BEFORE INSERT ON jobs WHEN new.args = '[3]' "
        "BEGIN SELECT RAISE(ABORT, 'no threes'); END")
    with pytest.raises(Exception, match="no threes"):
        app.enqueue_many([add.prepare(1), add.prepare(2), add.prepare(3), add.prepare(4)])
    assert counts(app)["queued"] == 1


# --- idempotency keys ------------------------------------------------------------------------


def test_key_returns_the_same_job(app, add) -> None:
    first = add.options(key="order-17").enqueue(1)
    second = add.options(key="order-17").enqueue(2)
    assert second.id == first.id
    assert second.args == [1]  # the existing job, unchanged
    other = add.options(key="order-18").enqueue(1)
    assert other.id != first.id
    assert counts(app)["queued"] == 2
    # the key is per task
    @app.task(name="math.sub")
    def sub(a):
        return -a

    assert sub.options(key="order-17").enqueue(1).id != first.id
    # by name too
    assert app.enqueue("math.add", args=[9], key="order-17").id == first.id


def test_failed_or_cancelled_twin_lets_a_new_job_be_made(app, add) -> None:
    first = add.options(key="k").enqueue(1)
    fail_job(app, first.id)
    second = add.options(key="k").enqueue(2)
    assert second.id != first.id and second.args == [2]
    assert add.options(key="k").enqueue(3).id == second.id
    assert second.cancel()
    third = add.options(key="k").enqueue(4)
    assert third.id not in (first.id, second.id)
    assert add.options(key="k").enqueue(5).id == third.id


def test_succeeded_and_running_twins_are_returned(app, add) -> None:
    first = add.options(key="k").enqueue(1)
    now = time.time()
    rows = app.store.write(lambda tx: tx.claim(["w"], DEFAULT, now, 30))
    assert add.options(key="k").enqueue(2).id == first.id  # running
    assert app.store.write(lambda tx: tx.succeed(first.id, rows[0]["attempt"], "1", "w", now,
                                                 now))
    again = add.options(key="k").enqueue(3)
    assert again.id == first.id and again.state is State.SUCCEEDED


def test_key_window_is_unique_for(app) -> None:
    @app.task(name="t.window", unique_for=0.2)
    def windowed(x):
        pass

    first = windowed.options(key="k").enqueue(1)
    assert windowed.options(key="k").enqueue(1).id == first.id
    until = first.created_at.timestamp() + 0.25
    deadline = time.monotonic() + 10
    while time.time() < until:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    later = windowed.options(key="k").enqueue(1)
    assert later.id != first.id


def test_unique_for_derives_the_key_from_arguments(app) -> None:
    @app.task(name="t.unique", unique_for=3600)
    def sync(user, *, full=False, depth=1):
        pass

    a = sync.enqueue(7, full=True, depth=2)
    assert a.key is not None
    assert sync.enqueue(7, depth=2, full=True).id == a.id  # keyword order does not matter
    assert sync.enqueue(8, full=True, depth=2).id != a.id
    assert sync.enqueue(7, full=False, depth=2).id != a.id
    assert sync.enqueue(7, full=True, depth=2).id == a.id
    assert counts(app)["queued"] == 3
    # an explicit key wins over the derived one
    b = sync.options(key="explicit").enqueue(7, full=True, depth=2)
    assert b.id != a.id and b.key == "explicit"


def test_debounce_pushes_back_and_takes_newest_args(app, add) -> None:
    t0 = time.time()
    first = add.options(key="reindex", debounce=10).enqueue(1)
    assert first.state is State.SCHEDULED
    assert first.run_at.timestamp() >= t0 + 10
    second = add.options(key="reindex", debounce=60).enqueue(2, b=5)
    assert second.id == first.id
    row = app.get_job(first.id)
    assert row.state is State.SCHEDULED
    assert row.run_at.timestamp() >= t0 + 60
    assert (row.args, row.kwargs) == ([2], {"b": 5})
    assert (second.args, second.kwargs) == ([2], {"b": 5})
    assert app.stats()["states"]["scheduled"] == 1


def test_debounce_moves_a_queued_job_back_to_scheduled(app, add) -> None:
    first = add.options(key="k").enqueue(1)
    assert first.state is State.QUEUED
    second = add.options(key="k", debounce=30).enqueue(2)
    assert second.id == first.id
    assert app.get_job(first.id).state is State.SCHEDULED
    assert app.get_job(first.id).args == [2]


@pytest.mark.sqlite_only("drives expiry with a `now` of its own: the PostgreSQL store "
                         "compares stored times with the server's clock only")
def test_debounce_moves_expiry_with_the_run_time(app, add) -> None:
    """expires=S counts from the job's run time; a debounce that moves the run time must not
    leave the old deadline behind (the job would expire before it could ever run)."""
    first = add.options(key="k", debounce=10, expires=5).enqueue(1)
    row = app.store.get_job(first.id)
    assert row["expires_at"] == pytest.approx(row["run_at"] + 5, abs=1e-3)
    old_deadline = row["expires_at"]
    second = add.options(key="k", debounce=100, expires=5).enqueue(2)
    assert second.id == first.id
    row = app.store.get_job(first.id)
    assert row["expires_at"] == pytest.approx(row["run_at"] + 5, abs=1e-3)
    # past the first deadline, before the new run time: nothing expires
    assert app.store.write(lambda tx: tx.expire_due(old_deadline + 1)) == 0
    assert app.get_job(first.id).state is State.SCHEDULED
    # past the new deadline it does, and says by how much
    assert app.store.write(lambda tx: tx.expire_due(row["expires_at"] + 1)) == 1
    job = app.get_job(first.id)
    assert job.state is State.CANCELLED
    assert "expired" in job.error and "5 s" in job.error


def test_debounce_needs_a_key(app, add) -> None:
    with pytest.raises(ValueError, match="key"):
        add.options(debounce=5).enqueue(1)
    assert app.stats() == EMPTY_STATS


ENQUEUER = textwrap.dedent("""
    import os, sys, time
    import litejobs

    db, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = litejobs.App(db)
    app.stats()  # connected before the race
    open(go + "." + str(os.getpid()), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never saw the go file")
        time.sleep(0.001)
    ids = {app.enqueue("t.once", args=[i], key="the-key").id for i in range(n)}
    print(" ".join(map(str, sorted(ids))))
""")


def test_concurrent_enqueues_of_one_key_give_one_job(app, tmp_path) -> None:
    app.stats()  # create the database and schema first
    script = tmp_path / "enqueuer.py"
    script.write_text(ENQUEUER)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), app.database, str(go),
                               "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = release_together(procs, lambda: len(list(tmp_path.glob("go.*"))) >= len(procs), go)
    ids = set()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
        ids |= {int(x) for x in out.split()}
    assert len(ids) == 1
    assert app.stats()["states"]["queued"] == 1


FRESH_ENQUEUER = textwrap.dedent("""
    import os, sys, time
    import litejobs

    db, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    open(go + "." + str(os.getpid()), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never saw the go file")
        time.sleep(0.0005)
    app = litejobs.App(db)  # the file does not exist yet: every process races to create it
    for i in range(n):
        app.enqueue("t.fresh", args=[os.getpid(), i])
""")


@pytest.mark.parametrize("round_", range(3))
def test_many_processes_creating_one_file_at_once(tmp_path, round_) -> None:
    """A fresh deploy: every web worker's first enqueue hits a file nobody has created yet."""
    db = tmp_path / "fresh.db"
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_ENQUEUER)
    go = tmp_path / "go"
    n_procs, per_proc = 8, 10
    procs = [subprocess.Popen([sys.executable, str(script), str(db), str(go), str(per_proc)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n_procs)]

    def nothing_created_yet() -> None:
        assert not db.exists()

    outs = release_together(procs, lambda: len(list(tmp_path.glob("go.*"))) >= n_procs, go,
                            before_go=nothing_created_yet)
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    stats = litejobs.App(db).stats()
    assert stats["states"]["queued"] == n_procs * per_proc


# --- Job handles -----------------------------------------------------------------------------


def test_cancel_queued_job(app, add) -> None:
    job = add.enqueue(1)
    assert job.cancel() is True
    assert job.state is State.CANCELLED
    assert app.get_job(job.id).state is State.CANCELLED
    with pytest.raises(litejobs.JobCancelled) as info:
        job.result(timeout=1)
    assert info.value.job_id == job.id
    assert job.cancel() is False  # already ended
    # a cancelled job is never claimed
    assert app.store.write(lambda tx: tx.claim(["w"], DEFAULT, time.time(), 30)) == []


def test_cancel_scheduled_job(app, add) -> None:
    job = add.options(delay=60).enqueue(1)
    assert job.cancel()
    assert app.store.write(lambda tx: tx.promote_due(time.time() + 120)) == 0
    assert app.get_job(job.id).state is State.CANCELLED


def test_cancel_running_job_records_interrupted_attempt(app, add) -> None:
    job = add.enqueue(1)
    now = time.time()
    app.store.write(lambda tx: tx.claim(["w"], DEFAULT, now, 30))
    assert job.refresh().state is State.RUNNING
    assert [a.outcome for a in job.attempts()] == ["running"]
    assert job.cancel()
    assert job.state is State.CANCELLED
    assert [a.outcome for a in job.attempts()] == ["interrupted"]
    # the worker's late report is refused
    assert not app.store.write(lambda tx: tx.succeed(job.id, 1, "1", "w", now, now + 1))
    assert app.get_job(job.id).state is State.CANCELLED


def test_result_timeout_on_queued_job(app, add) -> None:
    job = add.enqueue(1)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=str(job.id)):
        job.result(timeout=0.05)
    elapsed = time.monotonic() - start
    assert 0.04 <= elapsed < 2.0
    assert job.state is State.QUEUED


def test_result_of_succeeded_and_failed_jobs(app, add) -> None:
    ok, bad = add.enqueue(1), add.enqueue(2)
    now = time.time()
    app.store.write(lambda tx: tx.claim(["w1", "w2"], DEFAULT, now, 30))
    app.store.write(lambda tx: tx.succeed(ok.id, 1, '{"sum": 3}', "w1", now, now))
    app.store.write(lambda tx: tx.fail(bad.id, 1, "ZeroDivisionError: division by zero",
                                       "Traceback…", "w2", now, now, retry_at=None))
    assert ok.result(timeout=1) == {"sum": 3}
    with pytest.raises(litejobs.JobFailed) as info:
        bad.result(timeout=1)
    assert info.value.job_id == bad.id
    assert "ZeroDivisionError" in info.value.error
    assert bad.state is State.FAILED
    [attempt] = bad.attempts()
    assert (attempt.outcome, attempt.traceback) == ("failed", "Traceback…")


def test_refresh_of_pruned_job_raises_lookup_error(app, add) -> None:
    job = add.enqueue(1)
    job.cancel()
    app.store.write(lambda tx: tx.prune(time.time() + 10))
    with pytest.raises(LookupError, match=str(job.id)):
        job.refresh()


def test_job_to_dict_is_json(app, add) -> None:
    job = add.options(key="x").enqueue(1, b=[1, "two"])
    d = json.loads(json.dumps(job.to_dict()))
    for field in ("id", "task", "queue", "state", "attempt", "priority", "args", "kwargs",
                  "run_at", "created_at", "error"):
        assert field in d
    assert (d["id"], d["task"], d["state"], d["args"], d["kwargs"], d["key"]) == (
        job.id, "math.add", "queued", [1], {"b": [1, "two"]}, "x")
    assert datetime.fromisoformat(d["run_at"]).tzinfo is not None


# --- stats -----------------------------------------------------------------------------------


def test_stats_shape(app, add) -> None:
    assert app.stats() == EMPTY_STATS
    add.enqueue(1)
    add.enqueue(2)
    add.options(queue="mail", delay=60).enqueue(3)
    cancelled = add.options(queue="mail").enqueue(4)
    cancelled.cancel()
    stats = app.stats()
    assert set(stats) == {"states", "queues"}
    assert list(stats["states"]) == ALL_STATES
    assert stats["states"] == {**dict.fromkeys(ALL_STATES, 0), "queued": 2, "scheduled": 1,
                               "cancelled": 1}
    assert set(stats["queues"]) == {"default", "mail"}
    for per_queue in stats["queues"].values():
        assert list(per_queue) == ALL_STATES
    assert stats["queues"]["default"] == {**dict.fromkeys(ALL_STATES, 0), "queued": 2}
    assert stats["queues"]["mail"] == {**dict.fromkeys(ALL_STATES, 0), "scheduled": 1,
                                       "cancelled": 1}
    assert json.loads(json.dumps(stats)) == stats
