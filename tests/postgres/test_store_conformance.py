"""The same assertions on both stores: the SQLite file and the PostgreSQL database must mean
the same for every operation the PostgreSQL store implements so far (see the package
docstring of litejobs.store.postgres for what it does not do yet). The fixture ``store``
(tests/postgres/conftest.py) gives one of each kind; test_store_races.py holds the
assertions that need several processes at once.

Times are real (``time.time()``) on both: the PostgreSQL store reads the server's clock, so a
test moves time by waiting for a condition, with a deadline, never by passing a later ``now``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from litejobs.newjob import NewJobs
from litejobs.store import QueueLimits
from litejobs.store.protocols import Producer
from tests.postgres.stores import claim, enqueue, job, wait_for

# --- inserts and reads --------------------------------------------------------------------------


def test_insert_get_list_stats(store: Any) -> None:
    assert isinstance(store, Producer)
    a = store.insert_job(job("send", args="[1, {\"b\": 2, \"a\": 1}]"), time.time())
    assert a["state"] == "queued" and a["task"] == "send"
    ids = enqueue(store, job("send", "mail"), job("other", tags='["x", "y"]'),
                  job("later", delay=3600))
    got = store.get_job(a["id"])
    assert got["args"] == "[1, {\"b\": 2, \"a\": 1}]"  # byte for byte, not re-serialised
    assert (got["state"], got["attempt"], got["max_attempts"], got["queue"]) == (
        "queued", 0, 3, "default")
    assert store.get_job(ids[2])["state"] == "scheduled"
    assert store.get_job(10**9) is None
    assert [r["id"] for r in store.list_jobs()] == [*reversed(ids), a["id"]]
    assert [r["id"] for r in store.list_jobs(queue="mail")] == [ids[0]]
    assert [r["id"] for r in store.list_jobs(tag="y")] == [ids[1]]
    assert [r["id"] for r in store.list_jobs(state="scheduled")] == [ids[2]]
    assert [r["id"] for r in store.list_jobs(limit=2)] == [ids[2], ids[1]]
    stats = store.stats()
    assert stats["states"]["queued"] == 3 and stats["states"]["scheduled"] == 1
    assert stats["queues"]["mail"]["queued"] == 1
    assert store.queue_list() == [("default", False), ("mail", False)]


def test_bulk_insert_keeps_order_and_arguments(store: Any) -> None:
    template = job("bulk")
    # payloads as litejobs.serialization.encode writes them: compact
    rows = store.insert_jobs([job("a"), job("b"),
                              NewJobs(template, '[[1],["x",[2,3]]]', [[1], ["x", [2, 3]]]),
                              NewJobs(template, '[[[4],{"k":1}]]', [[4]], [{"k": 1}]),
                              job("c")], time.time())
    ids = [int(r["id"]) for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == 6
    assert [store.get_job(i)["task"] for i in ids] == ["a", "b", "bulk", "bulk", "bulk", "c"]
    assert store.get_job(ids[3])["args"] == '["x",[2,3]]'
    assert (store.get_job(ids[4])["args"], store.get_job(ids[4])["kwargs"]) == (
        "[4]", '{"k":1}')
    assert rows[3]["args"] == '["x",[2,3]]' and rows[4]["kwargs"] == '{"k":1}'


def test_keys_and_unique_for_twins(store: Any) -> None:
    first = enqueue(store, job("k", key="order-1", unique_for=3600))[0]
    assert enqueue(store, job("k", key="order-1", unique_for=3600)) == [first]
    assert enqueue(store, job("other", key="order-1", unique_for=3600)) != [first]
    assert enqueue(store, job("k", key="order-2", unique_for=3600)) != [first]
    # a cancelled twin is no twin
    assert store.cancel(first, "by test", time.time())
    second = enqueue(store, job("k", key="order-1", unique_for=3600))[0]
    assert second != first
    # outside its window (unique_for counts from the twin's creation) a new job is made
    third = wait_for("the twin's window to pass", lambda: [
        i for i in enqueue(store, job("k", key="order-1", unique_for=0.05)) if i != second])
    assert third[0] > second


def test_counts_and_bulk_pages(store: Any) -> None:
    ids = enqueue(store, job("a"), job("a", queue="q"), job("b"), job("a", delay=3600))
    assert store.count_matching(["queued"]) == 3
    assert store.count_matching(["queued", "scheduled"], task="a") == 3
    assert store.count_matching(["queued"], task="a", queue="q") == 1
    assert store.count_matching(["queued"], since=time.time() - 60) == 3
    assert store.count_matching(["queued"], since=time.time() + 60) == 0
    assert store.ids_matching(["queued", "scheduled"], limit=2) == ids[:2]
    assert store.ids_matching(["queued", "scheduled"], after_id=ids[1]) == ids[2:]
    assert store.job_counts() == {("default", "queued"): 2, ("q", "queued"): 1,
                                  ("default", "scheduled"): 1}
    ready = store.oldest_ready(time.time())
    assert set(ready) == {"default", "q"} and all(0 <= v < 30 for v in ready.values())
    now = time.time()
    store.write(lambda tx: tx.heartbeat("s1", "h", 1, now, now, "default"))
    busy = {"name": "w2", "pid": 12, "state": "busy", "job": ids[0], "task": "a",
            "started_at": 1.5, "rss": 2048, "jobs_done": 3}
    store.write(lambda tx: tx.set_workers("s1", [{"name": "w1", "pid": 11, "state": "idle"},
                                                busy]))
    workers = store.workers()
    assert [(w["supervisor"], w["name"], w["pid"], w["state"], w["job"]) for w in workers] == [
        ("s1", "w1", 11, "idle", None), ("s1", "w2", 12, "busy", ids[0])]
    assert {k: workers[1][k] for k in busy} == busy


# --- claims -------------------------------------------------------------------------------------


def test_claim_order_and_priorities(store: Any) -> None:
    low, high_late, high_early, mid = enqueue(
        store, job(priority=-3), job(priority=5, delay=-10), job(priority=5, delay=-20),
        job("m", queue="other", priority=1))
    got = claim(store, ["w1", "w2", "w3"])
    assert [r["id"] for r in got] == [high_early, high_late, mid]
    assert [r["leased_by"] for r in got] == ["w1", "w2", "w3"]  # the best job to the first
    assert all(r["attempt"] == 1 for r in got)
    assert store.get_job(high_early)["state"] == "running"
    assert [r["id"] for r in claim(store, ["w4", "w5"])] == [low]
    assert claim(store, ["w6"]) == []


def test_paused_queue_is_not_claimed(store: Any) -> None:
    a, b = enqueue(store, job(queue="a", priority=9), job(queue="b"))
    store.set_paused("a", True)
    assert ("a", True) in store.queue_list()
    assert [r["id"] for r in claim(store, ["w1", "w2"])] == [b]
    store.set_paused("a", False)
    assert [r["id"] for r in claim(store, ["w1", "w2"])] == [a]


def test_expired_job_is_not_claimed(store: Any) -> None:
    gone, kept = enqueue(store, job(expires_at=time.time() + 0.05), job())
    wait_for("the expiry to pass", lambda: time.time() > store.get_job(gone)["expires_at"] + 0.05)
    assert [r["id"] for r in claim(store, ["w1", "w2"])] == [kept]
    assert store.write(lambda tx: tx.expire_due(time.time())) == 1
    assert store.get_job(gone)["state"] == "cancelled"
    assert store.get_job(gone)["error"].startswith("expired")


def test_queue_limit_within_one_claim(store: Any) -> None:
    enqueue(store, *[job(queue="lim") for _ in range(5)])
    assert len(claim(store, ["w1", "w2", "w3"], {"lim": 2})) == 2
    assert claim(store, ["w4"], {"lim": 2}) == []


def test_queue_rate_limit_and_next_slot(store: Any) -> None:
    enqueue(store, *[job(queue="r") for _ in range(5)])
    limits = [QueueLimits("r", None, (2, 0.5))]

    def claim_rated() -> tuple[list[Any], float | None]:
        def work(tx: Any) -> tuple[list[Any], float | None]:
            return list(tx.claim(["w1", "w2", "w3"], limits, time.time(), 30.0)), tx.next_slot

        return store.write(work)  # type: ignore[no-any-return]

    started = time.time()
    rows, slot = claim_rated()
    assert len(rows) == 2 and slot is not None  # the window is full: when it has room
    rows, again = claim_rated()
    assert rows == [] and again == pytest.approx(slot, abs=0.05)
    assert started + 0.5 <= slot <= time.time() + 0.55 + 0.5  # its window: 0.5 s and a margin
    wait_for("the window to pass its slot", lambda: time.time() >= slot)
    rows = wait_for("the next two starts", lambda: claim_rated()[0])
    assert len(rows) == 2 and time.time() - started >= 0.5


def test_concurrency_keys_within_claims(store: Any) -> None:
    a1, a2, a3, b1, b2, plain = enqueue(
        store, job(concurrency_key="a", concurrency_limit=1, priority=3),
        job(concurrency_key="a", concurrency_limit=1, priority=2),
        job(concurrency_key="a", concurrency_limit=1, priority=1),
        job(concurrency_key="b", concurrency_limit=2), job(concurrency_key="b",
                                                           concurrency_limit=2), job())
    got = claim(store, ["w1", "w2", "w3", "w4", "w5"])
    assert sorted(r["id"] for r in got) == sorted([a1, b1, b2, plain])
    assert claim(store, ["w6"]) == []  # both keys full
    now = time.time()
    assert store.write(lambda tx: tx.succeed(a1, 1, "null", "w1", now, now))
    assert [r["id"] for r in claim(store, ["w1", "w6"])] == [a2]  # a's next, a only one
    now = time.time()
    assert store.write(lambda tx: tx.fail(b1, 1, "x", None, "w2", now, now, None))
    assert store.cancel(a2, "stop", time.time())
    assert [r["id"] for r in claim(store, ["w1", "w2"])] == [a3]


def test_bulk_jobs_keep_their_concurrency_key(store: Any) -> None:
    keyed = job("bulk", concurrency_key="k", concurrency_limit=1)
    rows = store.insert_jobs([NewJobs(keyed, "[[1],[2]]", [[1], [2]]),
                              job(concurrency_key="k", concurrency_limit=1), job()], time.time())
    assert [store.get_job(r["id"])["concurrency_key"] for r in rows] == ["k", "k", "k", None]
    assert len(claim(store, ["w1", "w2", "w3"])) == 2  # one of key k, and the plain one


def test_a_keyed_job_of_higher_priority_goes_first(store: Any) -> None:
    plain, keyed = enqueue(store, job(priority=0), job(priority=5, concurrency_key="k"))
    assert [r["id"] for r in claim(store, ["w1"])] == [keyed]
    assert [r["id"] for r in claim(store, ["w1"])] == [plain]


def test_a_full_keys_backlog_does_not_hide_other_jobs(store: Any) -> None:
    ids = enqueue(store, *[job(priority=9, concurrency_key="big") for _ in range(30)],
                  job(priority=1, concurrency_key="small"), job(priority=0))
    assert [r["id"] for r in claim(store, ["w1"])] == [ids[0]]
    assert [r["id"] for r in claim(store, ["w1"])] == [ids[30]]  # past big's 29 waiting
    assert [r["id"] for r in claim(store, ["w1"])] == [ids[31]]
    assert claim(store, ["w1"]) == []


# --- outcomes, fenced -----------------------------------------------------------------------------


def test_succeed_fail_retry_and_a_stale_attempt_refused(store: Any) -> None:
    (jid,) = enqueue(store, job(max_attempts=2))
    claim(store, ["w1"])
    now = time.time()
    assert store.write(lambda tx: tx.fail(jid, 1, "boom", "tb", "w1", now - 1, now, now))
    assert store.get_job(jid)["state"] == "queued"
    (second,) = claim(store, ["w2"])
    assert second["attempt"] == 2
    now = time.time()
    # attempt 1 reports late: refused, recorded as stale; attempt 2 goes on
    assert not store.write(lambda tx: tx.succeed(jid, 1, '"late"', "w1", now - 1, now))
    assert store.get_job(jid)["state"] == "running"
    assert store.write(lambda tx: tx.succeed(jid, 2, '"ok"', "w2", now - 0.5, now))
    row = store.get_job(jid)
    assert (row["state"], row["result"], row["leased_by"]) == ("succeeded", '"ok"', "w2")
    assert row["finished_at"] - row["started_at"] == pytest.approx(0.5, abs=0.01)
    attempts = store.attempts(jid)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "stale"), (2, "succeeded")]
    assert "boom" in attempts[0].error and "stale" in attempts[0].error
    assert not store.write(lambda tx: tx.fail(jid, 2, "x", None, "w2", now, now, None))


def test_retries_run_out_then_manual_retry(store: Any) -> None:
    (jid,) = enqueue(store, job(max_attempts=1))
    claim(store, ["w"])
    now = time.time()
    assert store.write(lambda tx: tx.fail(jid, 1, "final", None, "w", now, now, None))
    row = store.get_job(jid)
    assert (row["state"], row["error"]) == ("failed", "final")
    assert store.retry(jid, 2, time.time())
    row = store.get_job(jid)
    # 2 more retries: 3 more attempts after the one it had
    assert (row["state"], row["max_attempts"], row["error"]) == ("queued", 4, None)
    assert not store.retry(jid, 2, time.time())  # only failed or cancelled jobs


def test_succeed_many_and_interrupt(store: Any) -> None:
    a, b, c = enqueue(store, job(), job(), job())
    rows = {r["id"]: r for r in claim(store, ["w1", "w2", "w3"])}
    now = time.time()
    done = [(a, 1, '"a"', "w1", now - 1, now), (b, 9, '"b"', "w2", now - 1, now)]
    assert store.write(lambda tx: tx.succeed_many(done)) == 1
    assert store.get_job(a)["result"] == '"a"' and store.get_job(b)["state"] == "running"
    assert store.write(lambda tx: tx.interrupt(c, 1, "drain", "w3", now, now))
    row = store.get_job(c)
    assert (row["state"], row["interrupts"], row["attempt"]) == ("queued", 1, 1)
    assert [(x.attempt, x.outcome) for x in store.attempts(c)] == [(1, "interrupted")]
    assert rows[c]["attempt"] == 1
    assert store.write(lambda tx: tx.unclaim(b, 1))
    assert store.get_job(b)["attempt"] == 0 and store.get_job(b)["state"] == "queued"


def test_progress_fenced_and_metadata_merged(store: Any) -> None:
    (jid,) = enqueue(store, job())
    claim(store, ["w"])
    first = [(jid, 1, 0.5, "half", '{"a":1,"b":{"c":1}}')]
    assert store.write(lambda tx: tx.set_progress_many(first)) == 1
    second = [(jid, 1, None, None, '{"b":{"d":2},"a":null}')]
    assert store.write(lambda tx: tx.set_progress_many(second)) == 1
    row = store.get_job(jid)
    assert (row["progress"], row["progress_message"]) == (0.5, "half")
    assert json.loads(row["metadata"]) == {"b": {"c": 1, "d": 2}}
    assert store.write(lambda tx: tx.set_progress_many([(jid, 7, 0.9, "x", None)])) == 0
    now = time.time()
    assert store.write(lambda tx: tx.succeed(jid, 1, "null", "w", now, now))
    assert store.write(lambda tx: tx.set_progress_many([(jid, 1, 1.0, "late", None)])) == 0
    assert store.get_job(jid)["progress"] == 0.5
    assert store.write(lambda tx: tx.set_progress_many([])) == 0


# --- upkeep ---------------------------------------------------------------------------------------


def test_prune_ended_jobs(store: Any) -> None:
    done, waiting = enqueue(store, job(priority=1), job())
    claim(store, ["w"])
    now = time.time()
    assert store.write(lambda tx: tx.succeed(done, 1, "null", "w", now, now))
    assert store.write(lambda tx: tx.prune(time.time() - 60)) == 0  # ended too recently
    assert store.write(lambda tx: tx.prune(time.time() + 60)) == 1
    assert store.get_job(done) is None and store.get_job(waiting) is not None


def test_supervisor_heartbeats(store: Any) -> None:
    now = time.time()
    store.write(lambda tx: tx.heartbeat("sup-1", "web-1", 4242, now - 5, now, "default"))
    store.write(lambda tx: tx.set_workers("sup-1", [{"pid": 1, "state": "idle"}]))
    (row,) = store.supervisors()
    assert (row["id"], row["hostname"], row["pid"], row["queues"]) == (
        "sup-1", "web-1", 4242, "default")
    assert row["heartbeat_at"] - row["started_at"] == pytest.approx(5, abs=0.01)
    assert abs(row["heartbeat_at"] - time.time()) < 30
    store.write(lambda tx: tx.forget_supervisors_before(time.time() - 60))
    assert [r["id"] for r in store.supervisors()] == ["sup-1"]
    store.write(lambda tx: tx.heartbeat("sup-2", "web-2", 7, now, now, "default"))
    store.write(lambda tx: tx.forget_supervisor("sup-1"))
    assert [r["id"] for r in store.supervisors()] == ["sup-2"]
    store.write(lambda tx: tx.forget_supervisors_before(time.time() + 60))
    assert store.supervisors() == []


def test_metrics_figures(store: Any) -> None:
    now = time.time()
    minute = int(now // 60)
    rows = [(minute, "outcome", "a", "succeeded", 1.0), (minute, "outcome", "a", "succeeded", 2.0),
            (minute - 5000, "outcome", "b", "failed", 1.0)]
    store.write(lambda tx: tx.add_figures(rows))
    store.write(lambda tx: tx.add_figures(rows[:1]))
    assert store.outcome_minutes(now - 120) == [(minute, "succeeded", 4.0)]
    # expired and cancelled jobs, counted in the transaction that ends them
    gone, kept = enqueue(store, job("exp", expires_at=time.time() + 0.05), job("can"))
    wait_for("the expiry", lambda: time.time() > store.get_job(gone)["expires_at"] + 0.05)

    def expire(tx: Any) -> None:
        at = time.time()  # one now for both, as the supervisor's claimer passes it
        assert tx.expire_due(at) == 1
        tx.figure_expired(at)

    store.write(expire)
    assert store.cancel(kept, "no", time.time())
    # a cron tick's fires
    tick = time.time()

    def fire(tx: Any) -> None:
        tx.cron_fire("e", 60.0, None, "skipped_misfire", tick)
        tx.cron_fire("e", 120.0, job("tick"), "fired", tick)
        tx.figure_cron("e", 60.0, 120.0, tick)

    store.write(fire)
    totals = {(n, label, k): v for n, label, k, v in store.metric_totals()}
    assert totals == {("outcome", "a", "succeeded"): 4.0, ("outcome", "b", "failed"): 1.0,
                      ("outcome", "exp", "expired"): 1.0, ("outcome", "can", "cancelled"): 1.0,
                      ("cron", "e", "skipped_misfire"): 1.0, ("cron", "e", "fired"): 1.0}
    assert store.write(lambda tx: tx.prune_metric_minutes(now - 3600)) == 1  # b's old minute
    assert len(store.metric_totals()) == 6  # the totals stay


# --- leases -------------------------------------------------------------------------------------


def test_lease_renew_and_expiry(store: Any) -> None:
    a, b = enqueue(store, job(), job())
    claimed = claim(store, ["sup1.w1", "sup2.w1"], lease=60)
    assert store.write(lambda tx: tx.expired_leases(time.time())) == []
    lost = store.write(lambda tx: tx.renew([(a, 1), (b, 7)], time.time() + 0.2))
    assert lost == [(b, 7)]  # a stale attempt number renews nothing
    expired = wait_for("a's lease to end", lambda: store.write(
        lambda tx: tx.expired_leases(time.time())))
    assert [r["id"] for r in expired] == [a]
    assert store.write(lambda tx: tx.renew([(a, 1)], time.time() + 60)) == []
    assert store.write(lambda tx: tx.expired_leases(time.time())) == []
    mine = store.write(lambda tx: tx.leases_of("sup1."))
    assert [r["leased_by"] for r in mine] == ["sup1.w1"]
    assert store.held_by("sup2.") == {claimed[1]["id"]: 1}


def test_scheduled_job_promoted_when_due(store: Any) -> None:
    (jid,) = enqueue(store, job(delay=0.2))
    assert store.get_job(jid)["state"] == "scheduled"
    assert store.next_scheduled() == pytest.approx(store.get_job(jid)["run_at"])
    wait_for("the job to be promoted", lambda: store.write(
        lambda tx: tx.promote_due(time.time())))
    assert store.get_job(jid)["state"] == "queued"


# --- cron ---------------------------------------------------------------------------------------


def test_cron_fires_each_instant_once(store: Any) -> None:
    store.write(lambda tx: tx.cron_reset("daily", "0 6 * * *", 1000.0))
    entry = store.write(lambda tx: tx.cron_entry("daily"))
    assert (entry["schedule"], entry["since"], entry["last_instant"]) == (
        "0 6 * * *", 1000.0, None)
    report = job("report")
    now = time.time()
    fired = store.write(lambda tx: tx.cron_fire("daily", 2000.0, report, "fired", now))
    assert fired is not None and store.get_job(fired)["task"] == "report"
    assert store.write(lambda tx: tx.cron_fire("daily", 2000.0, job("report"), "fired",
                                               now)) is None
    assert store.write(lambda tx: tx.cron_fire("daily", 3000.0, None, "skipped_misfire",
                                               now)) is None
    store.write(lambda tx: tx.cron_advance("daily", 3000.0, fired))
    store.write(lambda tx: tx.cron_advance("daily", 2500.0, None))  # never goes back
    entry = store.write(lambda tx: tx.cron_entry("daily"))
    assert (entry["last_instant"], entry["last_job"]) == (3000.0, fired)
    assert store.write(lambda tx: tx.job_state(fired)) == "queued"
    (listed,) = store.cron_entries()
    assert (listed["name"], listed["last_job"], listed["last_state"]) == (
        "daily", fired, "queued")
    assert store.write(lambda tx: tx.job_state(10**9)) is None
    assert store.stats()["states"]["queued"] == 1
    store.write(lambda tx: tx.cron_reset("daily", "0 7 * * *", 4000.0))
    assert store.write(lambda tx: tx.cron_entry("daily"))["since"] == 4000.0


def test_stored_schedules(store: Any) -> None:
    row = {"name": "nightly", "schedule": "0 3 * * *", "task": "report", "args": "[1]",
           "kwargs": "{}", "timezone": "UTC", "options": '{"queue":"slow"}'}
    empty = store.schedules_mark()
    assert empty[0] == 0 and store.schedules() == [] and store.get_schedule("nightly") is None
    stored, new = store.put_schedule(row, "key-1", 1000.0)
    assert new and {k: stored[k] for k in row} == row
    assert store.get_schedule("nightly") == stored and store.schedules() == [stored]
    assert store.write(lambda tx: tx.cron_entry("nightly"))["since"] == 1000.0
    first = store.schedules_mark()
    again, new = store.put_schedule({**row, "args": "[2]"}, "key-1", 2000.0)
    assert not new and again["args"] == "[2]" and again["updated_at"] > stored["updated_at"]
    assert store.write(lambda tx: tx.cron_entry("nightly"))["since"] == 1000.0  # unchanged
    assert store.schedules_mark() != first
    store.put_schedule({**row, "schedule": "0 4 * * *"}, "key-2", 3000.0)
    entry = store.write(lambda tx: tx.cron_entry("nightly"))
    assert (entry["schedule"], entry["since"]) == ("key-2", 3000.0)  # history starts anew
    stamps = store.write_with_schedules(lambda tx, s: s)
    assert stamps == {"nightly": store.get_schedule("nightly")["updated_at"]}
    assert store.delete_schedule("nightly") and not store.delete_schedule("nightly")
    assert store.write(lambda tx: tx.cron_entry("nightly")) is None
    assert store.schedules_mark()[0] == 0


def test_explain_facts(store: Any) -> None:
    ids = enqueue(store, job(queue="q", concurrency_key="k", concurrency_limit=5), job(queue="q"),
                  job(queue="q"), job(queue="r"))
    assert store.ahead_of(store.get_job(ids[2])) == 2
    got = store.write(lambda tx: tx.claim(["w1"], [QueueLimits("q", None, (5, 60.0))],
                                          time.time(), 30.0))
    assert [r["id"] for r in got] == [ids[0]]
    assert store.running_in_queue("q") == (1, [ids[0]])
    assert store.running_with_key("k") == [ids[0]]
    assert store.ahead_of(store.get_job(ids[2])) == 1
    count, oldest = store.rate_window("q", time.time() - 60)
    assert count == 1 and abs(oldest - time.time()) < 30
    assert store.rate_window("r", time.time() - 60) == (0, None)
    assert store.flow_window("k", time.time()) == (0, None)
    assert not store.queue_paused("q")
    store.set_paused("q", True)
    assert store.queue_paused("q") and not store.queue_paused("nowhere")


# --- an operator's changes ------------------------------------------------------------------------


def test_cancel_retry_purge(store: Any) -> None:
    queued, running, done = enqueue(store, job(priority=-1), job(priority=5), job(priority=1))
    claim(store, ["w1", "w2"])
    now = time.time()
    assert store.write(lambda tx: tx.succeed(done, 1, "1", "w2", now, now))
    assert store.cancel(queued, "not needed", time.time())
    assert not store.cancel(queued, "again", time.time())
    assert store.cancel(running, "stop it", time.time())
    assert not store.cancel(done, "too late", time.time())
    assert not store.cancel(10**9, "missing", time.time())
    row = store.get_job(running)
    assert (row["state"], row["error"], row["leased_by"]) == ("cancelled", "stop it", None)
    assert [(x.outcome, x.error) for x in store.attempts(running)] == [
        ("interrupted", "stop it")]
    assert store.retry_many([queued, running, done], 1, time.time()) == 2
    assert store.get_job(queued)["state"] == "queued"
    assert store.purge([queued, done]) == 1  # a queued job is not purged
    assert store.get_job(done) is None and store.attempts(done) == []
    assert store.cancel_many([queued, running], "bulk", time.time()) == 2
    assert store.purge([queued, running]) == 2
    assert store.stats()["states"] == {s: 0 for s in store.stats()["states"]}


def test_a_retried_attempts_end_and_its_retry_time_agree_exactly(store: Any) -> None:
    """A failed attempt's row ends exactly ``retry_at - now`` before the job is due again,
    and its start is ``now - started`` before its end: on PostgreSQL each statement has a now
    of its own, so the attempt's row takes the now of the statement that ended the attempt
    (the next attempt once started "0.294 s" after a 0.3 s back-off)."""
    for failing, row_time in ((job(max_attempts=3), "run_at"), (job(max_attempts=1),
                                                                "finished_at")):
        (jid,) = enqueue(store, failing)
        claim(store, ["w"])
        now = time.time()
        retry_at = now + 30 if row_time == "run_at" else None
        assert store.write(lambda tx: tx.fail(jid, 1, "boom", None, "w", now - 2, now,
                                              retry_at))
        (attempt,) = store.attempts(jid)
        due = store.get_job(jid)[row_time]
        assert due - (30 if retry_at else 0) == pytest.approx(attempt.finished_at, abs=1e-6)
        assert attempt.finished_at - attempt.started_at == pytest.approx(2, abs=1e-6)
    (jid,) = enqueue(store, job())
    claim(store, ["w"])
    now = time.time()
    assert store.write(lambda tx: tx.interrupt(jid, 1, "drain", "w", now - 1, now))
    (attempt,) = store.attempts(jid)
    assert store.get_job(jid)["run_at"] == pytest.approx(attempt.finished_at, abs=1e-6)
