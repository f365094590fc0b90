"""Parking a full concurrency key's queued jobs, on both stores: claims skip them, a slot of
the key coming free gives the best one back; and on PostgreSQL, where the claims give them
back (no trigger), a slot freed on another connection while a claimer was parking the key's
jobs is not lost.
"""

from __future__ import annotations

import time
from typing import Any

from litejobs.store import QueueLimits
from tests.postgres.stores import enqueue, job, open_store

PLAIN = [QueueLimits("default", None)]


def parked(store: Any) -> int:
    return int(store._read("SELECT count(*) AS n FROM jobs WHERE state = 'queued' AND "
                           "parked")[0]["n"])


def claim(store: Any, workers: list[str]) -> list[dict[str, Any]]:
    return list(store.write(lambda tx: tx.claim(workers, PLAIN, time.time(), 30.0)))


def finish(store: Any, row: dict[str, Any]) -> None:
    assert store.write(lambda tx: tx.succeed(row["id"], row["attempt"], "null",
                                             row["leased_by"], time.time(), time.time()))


def test_a_full_keys_jobs_are_parked_and_come_back_one_by_one(store: Any) -> None:
    keyed = {"concurrency_key": "k", "concurrency_limit": 1}
    ids = enqueue(store, *[job(**keyed) for _ in range(5)])
    (plain,) = enqueue(store, job())
    (first,) = claim(store, ["w1"])
    assert first["id"] == ids[0]
    got = claim(store, ["w1", "w2"])  # the key is full: its jobs parked, the plain one taken
    assert [r["id"] for r in got] == [plain]
    assert parked(store) == 4
    finish(store, first)
    for n, want in enumerate(ids[1:]):
        (row,) = claim(store, ["w1", "w2"])  # the slot came free: the best parked job back
        assert row["id"] == want
        assert claim(store, ["w2"]) == []  # full again
        assert parked(store) == 3 - n
        finish(store, row)
    assert claim(store, ["w1"]) == []


def test_a_slot_freed_while_a_claimer_parks_is_not_lost(pg_url: str) -> None:
    """The claimer counts the key's running job, then (before it commits) that job ends on
    another connection: the claimer's parking commits after it, so no trigger could have
    seen its parked jobs. The next claim gives one back."""
    a, b = open_store(pg_url), open_store(pg_url)
    try:
        keyed = {"concurrency_key": "k", "concurrency_limit": 1}
        ids = enqueue(a, *[job(**keyed) for _ in range(3)])
        (first,) = claim(a, ["w1"])

        def park_meanwhile(tx: Any) -> list[dict[str, Any]]:
            rows = list(tx.claim(["w2"], PLAIN, time.time(), 30.0))  # parks k's jobs
            finish(b, first)  # committed before this transaction
            return rows

        assert a.write(park_meanwhile) == []
        assert parked(a) == 2
        (row,) = claim(a, ["w2"])
        assert row["id"] == ids[1]
    finally:
        a.close()
        b.close()
