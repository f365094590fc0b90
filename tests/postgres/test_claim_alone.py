"""An idle supervisor's claim on PostgreSQL is one statement (issue 16, pickup latency):
``PostgresStore.claim_alone`` claims exactly what the claim transaction would for idle
workers, leaves limited queues and keyed jobs to that transaction, and a supervisor woken by
an enqueue uses it, with no BEGIN and queues read before its claim."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from litejobs.newjob import NewJob
from litejobs.store.postgres import PostgresStore
from tests.apps import basic
from tests.conftest import APP_SPEC, REPO, launch_supervisor
from tests.postgres.conftest import in_schema
from tests.postgres.stores import claim as full_claim

pytestmark = pytest.mark.timeout(60)

NOW = 1.0e9  # the inserts' now: run_at NOW is queued, not scheduled


def job(queue: str, priority: int = 0, *, expired: bool = False, ckey: str | None = None,
        ) -> NewJob:
    return NewJob(task="t", queue=queue, priority=priority, args="[1]", kwargs="{}",
                  run_at=NOW, max_attempts=3, timeout=None,
                  expires_at=NOW - 5 if expired else None, concurrency_key=ckey,
                  concurrency_limit=None if ckey is None else 1)


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url)
    yield s
    s.close()


@pytest.fixture
def twin(pg_server: str) -> Iterator[PostgresStore]:
    """A second store in a schema of its own, to run the claim transaction beside."""
    import psycopg

    schema = f"t_{os.getpid()}_twin_{random.randrange(1 << 30)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    s = PostgresStore(in_schema(pg_server, schema))
    yield s
    s.close()
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def state_of(store: PostgresStore, job_id: int) -> str:
    row = store.get_job(job_id)
    assert row is not None
    return str(row["state"])


def test_claims_what_the_transaction_claims(store: PostgresStore,
                                            twin: PostgresStore) -> None:
    """Random queues, priorities, expired jobs and a paused queue, claimed to the end by
    both, a random number of idle workers each time: the same jobs to the same workers with
    the same columns, in the same order."""
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rnd = random.Random(seed)
    jobs = [job(rnd.choice("abcp"), rnd.choice((0, 0, 3, 7)), expired=rnd.random() < 0.1)
            for _ in range(60)]
    for s in (store, twin):
        for k in range(0, len(jobs), 7):  # several inserts: run times differ between them
            s.insert_jobs(jobs[k:k + 7], NOW)
        s.set_paused("p", True)
    while True:
        workers = [f"w{i}" for i in range(rnd.randint(1, 4))]
        alone = store.claim_alone(workers, None, [], 30.0)
        full = full_claim(twin, workers)
        assert alone is not None
        assert [(r["id"], r["leased_by"], r["attempt"]) for r in alone] == \
            [(r["id"], r["leased_by"], r["attempt"]) for r in full], seed
        assert all(set(a) == set(f) for a, f in zip(alone, full, strict=True)), seed
        if not alone:
            break
    claimed = store.list_jobs(state="running", limit=100)
    assert len(claimed) == sum(1 for j in jobs if j.queue != "p" and j.expires_at is None)
    lease = claimed[0]["lease_until"] - claimed[0]["started_at"]
    assert lease == pytest.approx(30.0, abs=0.01)  # on the server's clock, as the claim's


def test_leaves_limited_queues_and_keyed_jobs_to_the_transaction(store: PostgresStore,
                                                                 ) -> None:
    ids = [int(r["id"]) for r in store.insert_jobs([job("lim"), job("a")], NOW)]
    assert store.claim_alone(["w0", "w1"], None, ["lim"], 30.0) is None
    assert [state_of(store, i) for i in ids] == ["queued", "queued"]  # nothing taken
    # a queue it does not visit does not stop it: not served, or limited but empty
    rows = store.claim_alone(["w0", "w1"], ["a"], ["lim"], 30.0)
    assert rows is not None and [r["id"] for r in rows] == [ids[1]]
    assert full_claim(store, ["w0"], {"lim": 1})[0]["id"] == ids[0]
    assert store.claim_alone(["w0"], None, ["lim"], 30.0) == []
    keyed = int(store.insert_jobs([job("k", ckey="key")], NOW)[0]["id"])
    assert store.claim_alone(["w0"], None, [], 30.0) is None  # a key's lock is the tx's
    assert state_of(store, keyed) == "queued"


def test_an_idle_supervisor_claims_an_enqueued_job_in_one_statement(tmp_path: Path,
                                                                     pg_url: str) -> None:
    """Seen from the server: the claim of a job enqueued to an idle supervisor is not
    preceded by the transaction's read of the queues to visit (that read sets
    ``plan_cache_mode`` for the rest of its transaction: test_claim_plans.py); a job of a
    limited queue is still claimed, by the transaction."""
    import psycopg

    app = basic.make_app(pg_url)
    app.stats()  # the store's tables, for the trigger below
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE claim_seen (id bigint, alone boolean);
            CREATE FUNCTION note_claim() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO claim_seen
                VALUES (NEW.id, current_setting('plan_cache_mode') <> 'force_generic_plan');
                RETURN NEW;
            END $$;
            CREATE TRIGGER note_claim AFTER UPDATE OF state ON jobs FOR EACH ROW
            WHEN (OLD.state = 'queued' AND NEW.state = 'running')
            EXECUTE FUNCTION note_claim();""")
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f'app = "{APP_SPEC}"\n[queues.lim]\nconcurrency = 1\n')
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "2",
           "--config", str(cfg), "--database", pg_url]
    sup = launch_supervisor(cmd, REPO, pg_url, tmp_path / "run.log")  # type: ignore[arg-type]
    add = app.tasks["basic.add"]
    try:
        assert add.enqueue(1, 1).result(timeout=20) == 2  # warmed up; then idle
        time.sleep(0.3)  # (nothing waits on this: the workers' outcomes are recorded)
        ids = []
        for k in range(3):
            ids.append(add.enqueue(k, 1).id)
            assert app.get_job(ids[-1]).result(timeout=20) == k + 1
        limited = add.options(queue="lim").enqueue(5, 5)
        assert limited.result(timeout=20) == 10
    finally:
        sup.kill_group()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        seen = dict(conn.execute("SELECT id, alone FROM claim_seen").fetchall())
    assert all(seen[i] for i in ids), (seen, sup.output())
    assert seen[limited.id] is False


def test_a_workflow_step_takes_its_upstream_results(store: PostgresStore) -> None:
    from tests.postgres.test_conformance_flows import step, steps

    _, (a, b) = steps(store, step("a"), step("b", 0))
    rows = store.claim_alone(["w0", "w1"], None, [], 30.0)
    assert rows is not None and [r["id"] for r in rows] == [a] and "results" not in rows[0]
    store.write(lambda tx: tx.succeed(a, 1, '"A"', "w0", time.time(), time.time()))
    rows = store.claim_alone(["w0", "w1"], None, [], 30.0)
    assert rows is not None and [r["id"] for r in rows] == [b]
    assert rows[0]["results"] == '["A"]'
