"""A flow key over its rate has its queued rated jobs parked (``flow_waits``), on both stores:
claims skip them, the key's window getting room gives them back, a key behind many blocked
keys is still reached, and the rate holds across two claiming processes while they park and
give back."""

from __future__ import annotations

from typing import Any

from litejobs.validate import UNLIMITED
from tests.postgres.stores import enqueue, job, race, wait_for
from tests.postgres.test_flow_races import _flow_claimer
from tests.postgres.test_parking import claim, finish, parked


def rated(key: str, count: int, period: float, **more: Any) -> Any:
    return job(concurrency_key=key, concurrency_limit=UNLIMITED, flow_rate=count,
               flow_period=period, **more)


def test_a_rated_keys_jobs_are_parked_and_come_back_as_its_window_has_room(store: Any) -> None:
    ids = enqueue(store, *[rated("k", 2, 0.5) for _ in range(6)])
    (plain,) = enqueue(store, job())
    got = claim(store, ["w1", "w2", "w3", "w4"])
    assert sorted(r["id"] for r in got) == sorted([*ids[:2], plain])
    for row in got:
        finish(store, row)
    assert claim(store, ["w1"]) == []
    assert parked(store) == 4  # over its rate: the rest parked, not looked past
    started = [store.get_job(i)["started_at"] for i in ids[:2]]
    for n in range(2):  # each window's room gives the next two back, best first
        rows = wait_for("the key's window to have room", lambda: claim(store, ["w1", "w2"]))
        assert [r["id"] for r in rows] == ids[2 + 2 * n:4 + 2 * n]
        for row in rows:
            finish(store, row)
        started += [store.get_job(r["id"])["started_at"] for r in rows]
    assert parked(store) == 0
    for k in range(len(started) - 2):  # never more than 2 starts in 0.5 s
        assert started[k + 2] - started[k] >= 0.5 - 1e-6, started


def test_a_key_behind_many_blocked_keys_is_reached(store: Any) -> None:
    """60 keys at 1 an hour, each started once, their other jobs queued ahead of a key's job:
    claims for 2 workers reach it (before parking on PostgreSQL, a claim's few looks past the
    blocked keys' jobs never did)."""
    for _ in range(3):
        enqueue(store, *[rated(f"key{k}", 1, 3600) for k in range(60)])
    (late,) = enqueue(store, rated("late", 1, 3600))
    seen: list[int] = []
    for _ in range(100):
        rows = claim(store, ["w1", "w2"])
        for row in rows:
            finish(store, row)
        seen += [r["id"] for r in rows]
        if late in seen or not rows:
            break
    assert late in seen, f"the late key's job was not claimed ({len(seen)} jobs claimed)"
    assert len(seen) == 61  # each key once, no more
    assert parked(store) == 120


def test_a_rate_holds_across_two_processes_parking_and_giving_back(where: str,
                                                                   store: Any) -> None:
    """Two processes claim a key's backlog at 3 per 0.5 s for 1.8 s: each window's jobs are
    given back by whichever claims first, and no 0.5 s holds more than 3 starts."""
    enqueue(store, *[rated("host", 3, 0.5, queue="f") for _ in range(60)])
    results = race(_flow_claimer, where, [(1.8,)] * 2)
    assert all(isinstance(r, list) for r in results), results
    claimed = [i for ids in results for i in ids]
    assert len(claimed) == len(set(claimed)) >= 9  # three windows' worth at least
    starts = sorted(store.get_job(i)["started_at"] for i in claimed)
    for k in range(len(starts) - 3):
        assert starts[k + 3] - starts[k] >= 0.5 - 1e-6, starts[k:k + 4]


def test_a_slow_sweep_spaced_out_still_gives_a_freed_slot_back(pg_url: str,
                                                               monkeypatch: Any) -> None:
    """Every sweep counted slow: claims sweep only after ten times its length, and a slot
    freed on another connection still comes back to a claim soon after."""
    from litejobs.store.postgres import parking
    from tests.postgres.stores import open_store

    monkeypatch.setattr(parking, "SWEEP_QUICK", 0.0)
    monkeypatch.setattr(parking, "SWEEP_SPACED_WAITS", 0)
    a, b = open_store(pg_url), open_store(pg_url)
    try:
        ids = enqueue(a, *[job(concurrency_key="k", concurrency_limit=1) for _ in range(3)])
        (first,) = claim(a, ["w1"])
        assert claim(a, ["w2"]) == [] and parked(a) == 2
        finish(b, first)  # the slot comes free on another connection
        (row,) = wait_for("the freed slot's job", lambda: claim(a, ["w2"]))
        assert row["id"] == ids[1]
    finally:
        a.close()
        b.close()
