"""Workflows mean the same on both stores: the same random runs (steps after random earlier
steps and tokens) written to a SQLite file and to PostgreSQL, then the same random rounds on
both (claim every ready step; each succeeds, fails, or fails with a retry, decided by its id
and attempt; tokens completed; steps retried or cancelled; runs cancelled), every job's state
and every run's state compared after each round. Randomised: the seed is printed
(LITEJOBS_FLOWS_SEED replays one)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from litejobs.store import QueueLimits
from litejobs.store.flows import RUN_CANCELLED, StepRow
from tests.postgres.stores import job, open_store


def _runs(store: Any, rng: random.Random) -> tuple[list[int], list[int]]:
    tokens = [store.create_token(None, time.time()) for _ in range(3)]
    runs = []
    for _ in range(6):
        steps: list[StepRow] = []
        for i in range(rng.randint(2, 6)):
            after: list[tuple[str, int]] = [("step", k) for k in sorted(
                rng.sample(range(i), min(i, rng.randint(0, 2))))]
            if rng.random() < 0.15:
                after.append(("token", rng.choice(tokens)))
            steps.append(StepRow(job(f"s{i}", delay=-0.001, max_attempts=2), after))
        runs.append(store.write_run(None, steps, time.time())[0])
    return runs, tokens


def _round(store: Any, seed: int, r: int, runs: list[int], tokens: list[int]) -> None:
    now = time.time()
    got = store.write(lambda tx: tx.claim([f"w{i}" for i in range(100)],
                                          [QueueLimits("default", None)], now, 60.0))
    for row in sorted(got, key=lambda g: int(g["id"])):
        pick = random.Random(f"{seed}-{row['id']}-{row['attempt']}").random()
        job_id, attempt = int(row["id"]), int(row["attempt"])
        if pick < 0.7:
            store.write(lambda tx: tx.succeed(job_id, attempt, str(job_id), "w", now,
                                              time.time()))
        else:
            # a retry at once while attempts are left (as the supervisor decides), or the end
            again = time.time() if pick < 0.8 and attempt < int(row["max_attempts"]) else None
            store.write(lambda tx: tx.fail(job_id, attempt, "boom", None, "w", now,
                                           time.time(), again))
    rng = random.Random(f"{seed}-round-{r}")
    if rng.random() < 0.5:
        store.complete_token(rng.choice(tokens), "1", time.time())
    ended = [int(j["id"]) for j in store.list_jobs(limit=10_000)
             if j["state"] in ("failed", "cancelled") and j["task"] != "litejobs.token"]
    if ended and rng.random() < 0.6:
        try:
            store.retry(rng.choice(sorted(ended)), 1, time.time())
        except ValueError:
            pass  # blocked by an upstream step: the same on both (compared below)
    if rng.random() < 0.1:
        store.cancel_run(rng.choice(runs), RUN_CANCELLED, time.time())


def _picture(store: Any, runs: list[int]) -> tuple[list[tuple[int, str]], list[str]]:
    jobs = sorted((int(j["id"]), str(j["state"])) for j in store.list_jobs(limit=10_000))
    return jobs, [store.run(r)["state"] for r in runs]


def test_random_runs_end_alike_on_both_stores(tmp_path: Path, pg_url: str) -> None:
    seed = int(os.environ.get("LITEJOBS_FLOWS_SEED") or random.randrange(2**32))
    print(f"LITEJOBS_FLOWS_SEED={seed}")
    stores = [open_store(str(tmp_path / "jobs.db")), open_store(pg_url)]
    try:
        made = [_runs(s, random.Random(seed)) for s in stores]
        assert made[0] == made[1]
        runs, tokens = made[0]
        for r in range(12):
            for s in stores:
                _round(s, seed, r, runs, tokens)
            pictures = [_picture(s, runs) for s in stores]
            assert pictures[0] == pictures[1], (seed, r)
    finally:
        for s in stores:
            s.close()
