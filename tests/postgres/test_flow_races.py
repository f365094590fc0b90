"""Races of workflows and flow keys on both stores: three processes claiming one flow key's
rated jobs at once (the rate holds; on PostgreSQL it fails with the key's lock taken out),
and two processes ending the upstream steps of the same chords at once (every chord's step
becomes ready exactly once)."""

from __future__ import annotations

import time
from typing import Any

from litejobs.store import QueueLimits
from litejobs.store.flows import StepRow
from litejobs.validate import UNLIMITED
from tests.postgres.stores import enqueue, job, open_store, race


def _flow_claimer(where: str, start: Any, out: Any, seconds: float) -> None:
    """Claim jobs of queue "f" (flow key "host": 3 starts per 0.5 s) for ``seconds``."""
    store = open_store(where)
    store.queue_list()
    start.wait()
    until = time.time() + seconds
    ids: list[int] = []
    limits = [QueueLimits("f", None)]
    try:
        while time.time() < until:
            got = store.write(lambda tx: tx.claim(["a", "b", "c"], limits, time.time(), 30.0))
            ids.extend(int(r["id"]) for r in got)
            time.sleep(0.002)
    except Exception as exc:  # the parent says what went wrong, rather than waiting
        out.put(f"{type(exc).__name__}: {exc}")
        raise
    out.put(ids)
    store.close()


def test_flow_key_rate_exact_across_three_claiming_processes(where: str, store: Any) -> None:
    enqueue(store, *[job("fetch", queue="f", concurrency_key="host",
                         concurrency_limit=UNLIMITED, flow_rate=3, flow_period=0.5)
                     for _ in range(60)])
    results = race(_flow_claimer, where, [(1.6,)] * 3)
    assert all(isinstance(r, list) for r in results), results
    claimed = [i for ids in results for i in ids]
    assert len(claimed) == len(set(claimed)) >= 6
    starts = sorted(store.get_job(i)["started_at"] for i in claimed)
    # no 0.5 s holds more than 3 starts of the key, whichever process made them
    for k in range(len(starts) - 3):
        assert starts[k + 3] - starts[k] >= 0.5 - 1e-6, starts[k:k + 4]


def _finisher(where: str, start: Any, out: Any, ids: list[int]) -> None:
    """Claim and succeed exactly the steps ``ids`` (claimed beforehand: attempt 1), one per
    barrier step, racing the other process on the same chord."""
    store = open_store(where)
    store.queue_list()
    done = 0
    for job_id in ids:
        start.wait()
        done += store.write(lambda tx, i=job_id: tx.succeed(
            i, 1, f'"{i}"', "w", time.time(), time.time()))
    out.put(done)
    store.close()


def test_chord_fan_in_exact_when_its_upstream_steps_end_at_once(where: str,
                                                                store: Any) -> None:
    chords = 25
    pairs: list[tuple[int, int, int]] = []
    for _ in range(chords):
        _, (a, b, c) = store.write_run(None, [
            StepRow(job("a", delay=-0.001), ()), StepRow(job("b", delay=-0.001), ()),
            StepRow(job("c", delay=-0.001), [("step", 0), ("step", 1)])], time.time())
        pairs.append((a, b, c))
    got = store.write(lambda tx: tx.claim([f"w{i}" for i in range(2 * chords)],
                                          [QueueLimits("default", None)], time.time(), 60))
    assert len(got) == 2 * chords
    assert race(_finisher, where, [([p[k] for p in pairs],) for k in (0, 1)]) == [chords, chords]
    for a, b, c in pairs:
        row = store.get_job(c)
        assert row["state"] == "queued", (a, b, c, row["state"])
    assert store.stats()["states"]["queued"] == chords
