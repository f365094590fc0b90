"""The same assertions on both stores where several processes race: producers of one key,
claimers of one limited queue, rate-limited queue or concurrency key, supervisors firing one
cron instant. Each race is made to happen (a barrier before each step, or processes claiming
in a loop), and each test fails on the PostgreSQL store when the lock it proves is taken out.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from litejobs.store import QueueLimits
from tests.postgres.stores import claim, enqueue, job, open_store, race


def _insert_keys(where: str, start: Any, out: Any, keys: int) -> None:
    store = open_store(where)
    store.queue_list()  # connected before the race starts, so that they do race
    ids = []
    for n in range(keys):
        start.wait()  # all producers insert key n at the same moment
        ids.append(int(store.insert_job(job("k", key=f"key-{n}", unique_for=3600),
                                        time.time())["id"]))
    out.put(ids)
    store.close()


def test_one_job_per_key_across_concurrent_producers(where: str, store: Any) -> None:
    store.queue_list()  # the schema exists before the producers race
    results = race(_insert_keys, where, [(30,)] * 4)
    assert all(r == results[0] for r in results)  # every producer got the same job per key
    assert len(set(results[0])) == 30
    assert store.stats()["states"]["queued"] == 30


def _rated_claimer(where: str, start: Any, out: Any, seconds: float) -> None:
    """Claim from the rate-limited queue "r" (3 starts per 0.5 s) for ``seconds``."""
    store = open_store(where)
    store.queue_list()
    start.wait()
    until = time.time() + seconds
    ids: list[int] = []
    limits = [QueueLimits("r", None, (3, 0.5))]
    while time.time() < until:
        got = store.write(lambda tx: tx.claim(["a", "b"], limits, time.time(), 30.0))
        ids.extend(int(r["id"]) for r in got)
        time.sleep(0.002)
    out.put(ids)
    store.close()


def test_queue_rate_limit_exact_across_two_claiming_processes(where: str, store: Any) -> None:
    enqueue(store, *[job(queue="r") for _ in range(40)])
    results = race(_rated_claimer, where, [(1.6,)] * 2)
    claimed = [i for ids in results for i in ids]
    assert len(claimed) == len(set(claimed)) >= 6
    starts = sorted(store.get_job(i)["started_at"] for i in claimed)
    # no 0.5 s holds more than 3 starts, whichever process made them
    for k in range(len(starts) - 3):
        assert starts[k + 3] - starts[k] >= 0.5 - 1e-6, starts[k:k + 4]


def _claimer(where: str, start: Any, out: Any, limit: int | None) -> None:
    """Claim and finish jobs of queue "lim" (``limit``: its concurrency) until none is left;
    after each claim, read how many run (committed)."""
    store = open_store(where)
    start.wait()
    seen: list[int] = []
    worst = 0
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 1.0:
        got = claim(store, ["a", "b"], {"lim": limit})
        worst = max(worst, store.stats()["queues"].get("lim", {}).get("running", 0))
        if not got:
            time.sleep(0.002)
            if store.stats()["states"]["queued"] == 0 and not seen:
                continue
            if store.stats()["queues"]["lim"]["queued"] == 0:
                break
            continue
        idle_since = time.monotonic()
        time.sleep(0.005)  # hold them a moment: an over-claim by the other would show
        for r in got:
            assert store.write(lambda tx, r=r: tx.succeed(r["id"], r["attempt"], "null",
                                                          r["leased_by"], time.time(),
                                                          time.time()))
            seen.append(int(r["id"]))
    out.put((seen, worst))
    store.close()


@pytest.mark.parametrize("limit_by", ["queue", "key"])
def test_limit_exact_across_two_claiming_processes(where: str, store: Any,
                                                   limit_by: str) -> None:
    """A queue's concurrency limit, or a concurrency key's (all jobs of the queue share it),
    holds while two processes claim at once."""
    more: dict[str, Any] = {}
    if limit_by == "key":
        more = {"concurrency_key": "k", "concurrency_limit": 3}
    ids = enqueue(store, *[job(queue="lim", **more) for _ in range(60)])
    limit = 3 if limit_by == "queue" else None
    results = race(_claimer, where, [(limit,)] * 2, timeout=120, gate="event")
    claimed = [i for seen, _ in results for i in seen]
    assert sorted(claimed) == ids  # each job claimed once, by one of them
    assert all(seen for seen, _ in results)  # both took part
    assert max(worst for _, worst in results) <= 3
    assert all(store.get_job(i)["attempt"] == 1 for i in ids)


def _fire_instants(where: str, start: Any, out: Any, instants: int) -> None:
    store = open_store(where)
    store.queue_list()
    made: list[int] = []
    for n in range(instants):
        start.wait()  # every supervisor fires instant n at the same moment
        job_id = store.write(lambda tx, n=n: tx.cron_fire("e", 60.0 * n, job("tick"), "fired",
                                                          time.time()))
        if job_id is not None:
            made.append(job_id)
    out.put(made)
    store.close()


def test_cron_instant_makes_one_job_across_concurrent_supervisors(where: str,
                                                                  store: Any) -> None:
    store.queue_list()
    results = race(_fire_instants, where, [(20,)] * 4)
    made = [i for r in results for i in r]
    assert len(made) == len(set(made)) == 20
    assert store.stats()["states"]["queued"] == 20
