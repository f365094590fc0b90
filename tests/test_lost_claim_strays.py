"""After a turn whose end is unknown (its commit's answer lost), the supervisor gives back the
jobs the store leases to it that none of its workers holds: ``Leases.give_back_strays``, on
both stores (the ``database`` fixture). The lost answer itself, on a real connection, is
tests/postgres/test_lost_commit.py."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

import litejobs
from litejobs.leases import Leases
from litejobs.pool import Assignment
from litejobs.store import QueueLimits

DEFAULT = [QueueLimits("default")]


@pytest.fixture
def app(database: str) -> litejobs.App:
    return litejobs.App(database)


def _held(job_id: int, attempt: int) -> Assignment:
    return Assignment(id=job_id, attempt=attempt, task="t.work", queue="default",
                      max_attempts=3, interrupts=0, crashes=0, started=time.time(),
                      deadline=None, timeout=None)


def test_strays_are_given_back_uncounted_and_nothing_else(app: litejobs.App) -> None:
    jobs = [app.enqueue("t.work") for _ in range(6)]
    now = time.time()
    # five claimed by this supervisor ("sup:1"), one by another whose id shares the prefix's
    # start ("sup:10"): never ours
    rows = app.store.write(lambda tx: tx.claim(
        ["sup:1:w0", "sup:1:w1", "sup:1:w2", "sup:1:w3", "sup:1:w4", "sup:10:w0"],
        DEFAULT, now, 30.0))
    by_worker = {r["leased_by"]: int(r["id"]) for r in rows}
    running, ahead, withdrawn, waiting = (by_worker[f"sup:1:w{i}"] for i in range(4))
    stray = by_worker["sup:1:w4"]
    # what the supervisor knows: one running, one sent ahead, one withdrawn (still sent),
    # one whose outcome waits to be written; the fifth it never heard of (the lost claim)
    w = SimpleNamespace(running={(running, 1): _held(running, 1)},
                        backlog=[_held(ahead, 1), _held(withdrawn, 1)])
    w.backlog[1].withdrawn = True
    w.assignments = lambda: [*w.running.values(), *w.backlog]
    pool: Any = SimpleNamespace(workers={"w": w})
    leases = Leases(app.store, "sup:1", 30.0, 1.0)
    back = app.store.write(lambda tx: leases.give_back_strays(tx, pool, [(waiting, 1)]))
    assert back == [stray]
    row = app.store.get_job(stray)
    assert row is not None and row["state"] == "queued" and row["attempt"] == 0, row
    assert app.store.attempts(stray) == []  # uncounted: no attempt row, no crash
    for job in jobs:
        if job.id != stray:
            assert (app.store.get_job(job.id) or {})["state"] == "running", job.id
    # given back once: a second look finds nothing more
    assert app.store.write(lambda tx: leases.give_back_strays(tx, pool, [(waiting, 1)])) == []
    # and it is claimed again as attempt 1 (that number never ran)
    again = app.store.write(lambda tx: tx.claim(["sup:1:w5"], DEFAULT, time.time(), 30.0))
    assert [(int(r["id"]), int(r["attempt"])) for r in again] == [(stray, 1)]
