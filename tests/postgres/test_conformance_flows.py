"""The same assertions on both stores for workflows and tokens, the dashboard's job pages and
maintenance: chains, groups, chords' fan-in, a failed step cancelling downstream, retry
reviving, tokens completed and expired, then() continuations, a run's cancel, pruning runs,
job pages, filters and counts, a run's graph, health facts. (The fixture ``store`` gives one
store of each kind; times are real, see test_store_conformance.py.)"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from litejobs.store.flows import StepRow
from litejobs.store.views import JobFilter
from tests.postgres.stores import claim, enqueue, job, wait_for


def steps(store: Any, *rows: StepRow, name: str | None = "run") -> tuple[int, list[int]]:
    """Write a run whose jobs' run time is now (made just before the call)."""
    run: tuple[int, list[int]] = store.write_run(name, list(rows), time.time())
    return run


def step(task: str, *after: int, token: int | None = None, **more: Any) -> StepRow:
    waits: list[tuple[str, int]] = [("step", i) for i in after]
    if token is not None:
        waits.append(("token", token))
    return StepRow(job(task, delay=-0.001, **more), waits)


def states(store: Any, ids: list[int]) -> list[str]:
    return [store.get_job(i)["state"] for i in ids]


def run_ok(store: Any, job_id: int, result: Any = None) -> None:
    """Claim ``job_id`` (it must be the only queued job) and record its success."""
    got = claim(store, ["w1"])
    assert [g["id"] for g in got] == [job_id]
    text = json.dumps(result)
    assert store.write(lambda tx: tx.succeed(job_id, got[0]["attempt"], text, "w1",
                                             time.time(), time.time()))


def run_fail(store: Any, job_id: int) -> None:
    got = claim(store, ["w1"])
    assert [g["id"] for g in got] == [job_id]
    assert store.write(lambda tx: tx.fail(job_id, got[0]["attempt"], "boom", None, "w1",
                                          time.time(), time.time(), None))


def test_chain_and_chord_fan_in_with_results_in_order(store: Any) -> None:
    run, (a, b, c, d, e) = steps(store, step("a"), step("b", 0), step("c"), step("d"),
                                 step("e", 3, 2))
    assert states(store, [a, b, c, d, e]) == ["queued", "waiting", "queued", "queued",
                                              "waiting"]
    assert store.upstream_of(e) == [d, c] and store.downstream_of(a) == [b]
    assert store.run_sinks(run) == [b, e]
    got = {g["id"]: g for g in claim(store, ["w1", "w2", "w3"])}
    assert set(got) == {a, c, d} and all(g["workflow"] == run for g in got.values())
    for job_id, result in ((a, "A"), (c, {"c": 1})):
        store.write(lambda tx, i=job_id, r=result: tx.succeed(
            i, 1, json.dumps(r), "w1", time.time(), time.time()))
    assert states(store, [b, e]) == ["queued", "waiting"]  # e still waits on d
    store.write(lambda tx: tx.succeed(d, 1, "[1, 2]", "w1", time.time(), time.time()))
    assert states(store, [b, e]) == ["queued", "queued"]
    results = store.write(lambda tx: tx.step_results([b, e, a]))
    assert set(results) == {b, e}
    assert json.loads(results[b]) == ["A"]
    assert json.loads(results[e]) == [[1, 2], {"c": 1}]  # in the order of after: d, c
    info = store.run(run)
    assert info["state"] == "running" and info["counts"] == {"succeeded": 3, "queued": 2}
    assert info["name"] == "run" and store.run(10**9) is None


def test_failed_step_cancels_downstream_and_retry_revives_them(store: Any) -> None:
    run, (a, b, c, other) = steps(store, step("a"), step("b", 0), step("c", 1), step("x"))
    got = claim(store, ["w1", "w2"])
    assert {g["id"] for g in got} == {a, other}
    store.write(lambda tx: tx.fail(a, 1, "boom", None, "w1", time.time(), time.time(), None))
    assert states(store, [a, b, c, other]) == ["failed", "cancelled", "cancelled", "running"]
    assert store.get_job(b)["error"] == f"upstream step {a} failed"
    assert store.get_job(c)["error"] == f"upstream step {a} failed"
    assert store.run(run)["state"] == "failed"
    assert [r["id"] for r in store.runs(state="failed")] == [run]
    with pytest.raises(ValueError, match=f"retry {a} instead"):
        store.retry(c, 2, time.time())
    blocked: list[tuple[int, int | None, str]] = []
    assert store.retry_many([b, c], 2, time.time(), blocked) == 0
    assert blocked == [(b, a, "b"), (c, b, "c")]
    assert store.retry(a, 2, time.time())
    assert states(store, [a, b, c]) == ["queued", "waiting", "waiting"]
    assert store.get_job(b)["error"] is None and store.run(run)["state"] == "running"
    run_ok(store, a, "again")
    assert states(store, [b, c]) == ["queued", "waiting"]


def test_retry_of_a_step_whose_upstream_runs_waits_again(store: Any) -> None:
    _, (a, b) = steps(store, step("a"), step("b", 0))
    store.cancel(b, "by hand", time.time())
    assert states(store, [a, b]) == ["queued", "cancelled"]
    assert store.retry(b, 1, time.time())  # a still runs: b waits for it again
    assert states(store, [a, b]) == ["queued", "waiting"]
    run_ok(store, a)
    assert states(store, [b]) == ["queued"]


def test_tokens_complete_once_and_release_their_steps(store: Any) -> None:
    token = store.create_token(60.0, time.time())
    assert store.get_job(token)["state"] == "waiting"
    run, (a,) = steps(store, step("after-token", token=token))
    assert states(store, [a]) == ["waiting"]
    assert store.complete_token(token, '{"ok": true}', time.time()) is None
    assert states(store, [a, token]) == ["queued", "succeeded"]
    assert store.get_job(token)["workflow"] == run
    assert store.complete_token(token, "1", time.time()) == (
        f"token {token} was already completed; a token completes once")
    assert store.complete_token(10**9, "1", time.time()) == (
        f"token {10**9} does not exist (never created, or pruned)")
    assert store.complete_token(a, "1", time.time()) == f"job {a} is not a token"
    results = store.write(lambda tx: tx.step_results([a]))
    assert json.loads(results[a]) == [{"ok": True}]
    # a completed token is waited on no more: the step is ready at once
    _, (b,) = steps(store, step("b", token=token))
    assert states(store, [b]) == ["queued"]
    with pytest.raises(ValueError, match="is not a token"):
        steps(store, step("c", token=a))
    with pytest.raises(ValueError, match="does not exist"):
        steps(store, step("c", token=10**9))
    assert not store.retry(token, 1, time.time())  # succeeded: nothing to retry


def test_expired_token_fails_and_cancels_what_waits_on_it(store: Any) -> None:
    token = store.create_token(0.2, time.time())
    _, (a, b) = steps(store, step("a", token=token), step("b", 0))
    assert store.write(lambda tx: tx.expire_tokens(time.time())) == 0

    def expired() -> bool:
        return bool(store.write(lambda tx: tx.expire_tokens(time.time())))

    wait_for("the token's timeout passed", expired)
    row = store.get_job(token)
    assert row["state"] == "failed"
    assert row["error"] == "token not completed within its timeout of 0.2 s"
    assert states(store, [a, b]) == ["cancelled", "cancelled"]
    assert store.get_job(b)["error"] == f"upstream step {token} failed"
    with pytest.raises(ValueError, match=f"token {token} is failed"):
        steps(store, step("c", token=token))
    with pytest.raises(ValueError, match=f"waits on token {token}"):
        store.retry(a, 1, time.time())
    with pytest.raises(ValueError, match="is a token, which is not retried"):
        store.retry(token, 1, time.time())


def test_then_continuation_takes_its_parents_place(store: Any) -> None:
    _, (a, b) = steps(store, step("a"), step("b", 0))
    got = claim(store, ["w1"])
    assert [g["id"] for g in got] == [a]
    started = time.time()
    children = [(job("child1", delay=-0.001), None), (job("child2", delay=-0.001), None)]
    assert store.write(lambda tx: tx.continue_with(
        a, 1, children, job("cont"), None, "w1", started, time.time(), "then"))
    row = store.get_job(a)
    assert row["state"] == "succeeded" and row["continuation"] is not None
    cont = int(row["continuation"])
    assert store.upstream_of(b) == [cont]
    kids = store.upstream_of(cont)
    assert len(kids) == 2 and states(store, kids) == ["queued", "queued"]
    assert states(store, [cont, b]) == ["waiting", "waiting"]
    # the attempt no longer holds the job: refused, nothing written
    assert not store.write(lambda tx: tx.continue_with(
        a, 1, [], job("late"), None, "w1", started, time.time(), "then"))
    for _ in kids:
        got = claim(store, ["w2"])
        value = "x" if got[0]["id"] == kids[0] else "y"
        store.write(lambda tx, g=got[0], v=value: tx.succeed(
            g["id"], g["attempt"], json.dumps(v), "w2", time.time(), time.time()))
    assert states(store, [cont, b]) == ["queued", "waiting"]
    assert json.loads(store.write(lambda tx: tx.step_results([cont]))[cont]) == ["x", "y"]
    run_ok(store, cont, "joined")
    assert states(store, [b]) == ["queued"]
    assert json.loads(store.write(lambda tx: tx.step_results([b]))[b]) == ["joined"]


def test_run_cancel_and_retry_resumes_it(store: Any) -> None:
    run, (a, b, c) = steps(store, step("a"), step("b", 0), step("c"))
    claim(store, ["w1"])  # a runs
    cancelled = store.cancel_run(run, "cancelled (workflow cancelled)", time.time())
    assert cancelled == [a, b, c]
    assert states(store, [a, b, c]) == ["cancelled"] * 3
    assert store.run(run)["state"] == "cancelled"
    assert [x.outcome for x in store.attempts(a)] == ["interrupted"]
    assert store.cancel_run(run, "again", time.time()) == []
    assert store.retry(a, 1, time.time())
    assert states(store, [a, b]) == ["queued", "waiting"]
    assert store.run(run)["cancelled_at"] is None


def test_prune_keeps_needed_steps_and_prunes_empty_runs(store: Any) -> None:
    run, (a, b) = steps(store, step("a"), step("b", 0))
    run_ok(store, a, "kept")

    def gone(job_id: int) -> bool:
        store.write(lambda tx: tx.prune(time.time() + 1))
        return store.get_job(job_id) is None

    store.write(lambda tx: tx.prune(time.time() + 1))
    assert store.get_job(a) is not None  # b still needs its result
    assert store.write(lambda tx: tx.prune_runs(time.time() + 1)) == 0
    run_ok(store, b)
    wait_for("both steps pruned", lambda: gone(a) and gone(b))
    assert store.write(lambda tx: tx.prune_runs(time.time() - 3600)) == 0  # too new
    assert store.write(lambda tx: tx.prune_runs(time.time() + 1)) == 1
    assert store.run(run) is None


def test_job_pages_filters_counts_and_bulk_ids(store: Any) -> None:
    ids = enqueue(store, *[job("send" if i % 2 else "other", queue="mail" if i < 4 else "q",
                               args=json.dumps([f"user{i}@example.com"]),
                               tags='["vip"]' if i % 3 == 0 else None) for i in range(10)])
    top = store.top_job_id()
    assert top == ids[-1]
    page = store.job_page(JobFilter(), limit=4)
    assert [r["id"] for r in page.rows] == ids[::-1][:4] and page.older == ids[6]
    assert set(page.rows[0]) >= {"id", "task", "state", "error", "tags", "workflow"}
    assert "args" not in page.rows[0]
    rest = store.job_page(JobFilter(), before=page.older, limit=50)
    assert [r["id"] for r in rest.rows] == ids[::-1][4:] and rest.older is None
    assert [r["id"] for r in store.job_page(JobFilter(task="send")).rows] == ids[1::2][::-1]
    f = JobFilter(states=("queued",), queue="mail")
    assert [r["id"] for r in store.job_page(f).rows] == ids[:4][::-1]
    assert [r["id"] for r in store.job_page(JobFilter(tag="vip")).rows] == ids[::3][::-1]
    assert [r["id"] for r in store.job_page(JobFilter(text="USER7@")).rows] == [ids[7]]
    assert store.count_jobs(JobFilter(task="other")) == 5
    assert store.count_jobs(JobFilter(), cap=3) == 4
    assert store.count_jobs(JobFilter(states=("failed",))) == 0
    assert store.ids_for(JobFilter(task="send"), 0, top, limit=2) == ids[1:4:2]
    assert store.ids_for(JobFilter(tag="vip"), ids[0], top) == ids[3::3]
    assert store.ids_for(JobFilter(), 0, ids[2]) == ids[:3]
    # a scan window smaller than the jobs: the page says how far back it looked
    sparse = store.job_page(JobFilter(task="none"), scan=4)
    assert sparse.rows == [] and sparse.searched_to == top + 1 - 4
    assert store.job_page(JobFilter(), before=1).rows == []


def test_workflow_graph_and_run_filter(store: Any) -> None:
    run, (a, b, c) = steps(store, step("a"), step("b", 0), step("c", 0, 1))
    nodes, edges, size = store.workflow_graph(run)
    assert size == 3 and [(n["id"], n["task"], n["state"]) for n in nodes] == [
        (a, "a", "queued"), (b, "b", "waiting"), (c, "c", "waiting")]
    assert edges == [(a, b), (a, c), (b, c)]
    assert store.workflow_graph(run, limit=2) == ([], [], 3)
    assert [r["id"] for r in store.job_page(JobFilter(workflow=run)).rows] == [c, b, a]
    assert store.count_jobs(JobFilter(workflow=run, states=("waiting",))) == 2


def test_maintenance_facts(store: Any) -> None:
    _, (a,) = steps(store, step("a"))
    assert store.quick_check() == []
    store.verify()
    assert store.file_changed() is None
    facts = store.inspect(time.time())
    assert (facts["queued"], facts["running"], facts["expired_leases"]) == (1, 0, 0)
    assert facts["oldest_queued"] == store.get_job(a)["run_at"]
    store.write(lambda tx: tx.heartbeat("sup-1", "host", 1, time.time(), time.time(), "*"))
    health = store.health_facts(time.time(), 10.0, 30.0)
    assert health["supervisors"] == 1 and health["expired_leases"] == 0
    assert health["newest_heartbeat"] is not None
    assert isinstance(store.checkpoint(), tuple) and store.wal_size() >= 0


def test_postgres_maintenance_has_no_file(where: str, store: Any) -> None:
    if not where.startswith("postgresql://"):
        pytest.skip("what only the PostgreSQL store says")
    assert store.checkpoint(truncate=True) == (0, 0) and store.wal_size() == 0
    with pytest.raises(ValueError, match="with pg_dump") as caught:
        store.backup_to("/tmp/x.db")
    assert "\n" not in str(caught.value)


# --- flow keys' rates ---------------------------------------------------------------------------


def rated(n: int, key: str = "host", rate: int = 2, period: float = 1.0) -> list[Any]:
    from litejobs.validate import UNLIMITED

    return [job("fetch", queue="f", concurrency_key=key, concurrency_limit=UNLIMITED,
                flow_rate=rate, flow_period=period, delay=-0.001) for _ in range(n)]


def claim_f(store: Any, workers: int) -> tuple[list[int], float | None]:
    def work(tx: Any) -> tuple[list[int], float | None]:
        from litejobs.store import QueueLimits

        got = tx.claim([f"w{i}" for i in range(workers)], [QueueLimits("f", None)],
                       time.time(), 30.0)
        return [int(r["id"]) for r in got], tx.next_slot

    got: tuple[list[int], float | None] = store.write(work)
    return got


def test_flow_key_rate_holds_and_its_jobs_come_back_when_the_window_has_room(
        store: Any) -> None:
    ids = enqueue(store, *rated(5), *rated(1, key="other"),
                  job("plain", queue="f", delay=-0.001))
    got, slot = claim_f(store, 10)
    assert sorted(got) == [ids[0], ids[1], ids[5], ids[6]]  # 2 of "host", "other", plain
    assert slot is not None and time.time() < slot < time.time() + 1.5
    assert store.get_job(ids[0])["flow_rate"] == 2
    count, _ = store.flow_window("host", time.time())
    assert count == 2
    again, _ = claim_f(store, 10)
    assert again == []  # the window is full: nothing of the key, however many workers
    later = wait_for("the key's window has room again", lambda: claim_f(store, 10)[0])
    assert sorted(later) == [ids[2], ids[3]]
    starts = sorted(store.get_job(i)["started_at"] for i in [*got, *later] if i in ids[:5])
    assert starts[2] - starts[0] >= 1.0  # no 1 s window holds more than 2 starts
    store.write(lambda tx: tx.expire_due(time.time()))  # forgets starts that left


def test_flow_rate_kept_through_a_batch_and_a_run(store: Any) -> None:
    from litejobs.newjob import NewJobs

    template = rated(1)[0]
    rows = store.insert_jobs([NewJobs(template, '[[1],[2],[3]]', [[1], [2], [3]])],
                             time.time())
    assert all(store.get_job(r["id"])["flow_rate"] == 2 for r in rows)
    _, (a,) = steps(store, StepRow(rated(1, key="k2", rate=1)[0], ()))
    assert store.get_job(a)["flow_period"] == 1.0
    got, _ = claim_f(store, 10)
    assert len(got) == 3  # 2 of "host" (its rate), 1 of "k2" (its rate)
