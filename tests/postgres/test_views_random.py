"""The dashboard's job reads mean the same on both stores: the same jobs written to a SQLite
file and to PostgreSQL (ids alike: both stores start at 1), then random filters, page sizes
and scan windows walked page by page on both, with the counts and a bulk action's ids.
Randomised: the seed is printed (LITEJOBS_VIEWS_SEED replays one)."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from litejobs.store.flows import StepRow
from litejobs.store.views import JobFilter
from tests.postgres.stores import job, open_store

TASKS = ["send", "resize", "sync"]
QUEUES = ["default", "mail", "media"]
TAGS = ["vip", "eu", "beta"]
WORDS = ["apple", "Banana", "cherry", "o'neil", 'quote"d', "back\\slash", "naïve"]
STATES = ["queued", "scheduled", "failed", "cancelled", "waiting"]


def _build(store: Any, rng: random.Random, n: int) -> list[int]:
    """``n`` jobs and a few runs, made the same way from one seed; returns the runs' ids."""
    jobs = []
    for _ in range(n):
        tags = rng.sample(TAGS, rng.randint(0, 2))
        jobs.append(job(rng.choice(TASKS), queue=rng.choice(QUEUES),
                        args=json.dumps([rng.choice(WORDS), rng.randint(0, 9)],
                                        ensure_ascii=False),
                        delay=3600.0 if rng.random() < 0.15 else -0.001,
                        tags=json.dumps(tags) if tags else None))
    ids = [int(r["id"]) for r in store.insert_jobs(jobs, time.time())]
    store.cancel_many([i for i in ids if rng.random() < 0.2], "by hand", time.time())
    runs = []
    for _ in range(3):
        run, _ = store.write_run(None, [StepRow(job("step", delay=-0.001), ()),
                                        StepRow(job("step", delay=-0.001), [("step", 0)])],
                                 time.time())
        runs.append(run)
    return runs


def _walk(store: Any, f: JobFilter, limit: int, scan: int) -> list[int]:
    seen: list[int] = []
    before = None
    for _ in range(10_000):
        page = store.job_page(f, before, limit, scan)
        seen += [int(r["id"]) for r in page.rows]
        before = page.older if page.older is not None else page.searched_to
        if before is None:
            return seen
    raise AssertionError("the pages never ended")


def test_pages_counts_and_bulk_ids_alike_on_both_stores(tmp_path: Path, pg_url: str) -> None:
    seed = int(os.environ.get("LITEJOBS_VIEWS_SEED") or random.randrange(2**32))
    print(f"LITEJOBS_VIEWS_SEED={seed}")
    stores = [open_store(str(tmp_path / "jobs.db")), open_store(pg_url)]
    try:
        runs = [_build(s, random.Random(seed), 300) for s in stores]
        assert runs[0] == runs[1]
        assert stores[0].top_job_id() == stores[1].top_job_id()
        rng = random.Random(seed + 1)
        top = stores[0].top_job_id()
        for _ in range(40):
            def maybe(p: float, value: Any) -> Any:
                return value if rng.random() < p else None

            states = tuple(rng.sample(STATES, rng.randint(1, 3))) if rng.random() < 0.5 else ()
            f = JobFilter(states=states, task=maybe(0.4, rng.choice(TASKS)),
                          queue=maybe(0.3, rng.choice(QUEUES)), tag=maybe(0.3, rng.choice(TAGS)),
                          workflow=maybe(0.1, rng.choice(runs[0])),
                          text=maybe(0.3, rng.choice([*WORDS, "BANANA", "NAÏVE", "zzz"])))
            limit, scan = rng.choice([1, 7, 50]), rng.choice([5, 40, 50_000])
            walks = [_walk(s, f, limit, scan) for s in stores]
            assert walks[0] == walks[1], (seed, f, limit, scan)
            cap = rng.choice([3, 10_000])
            counts = [s.count_jobs(f, cap=cap) for s in stores]
            assert counts[0] == counts[1], (seed, f)
            after, most = rng.randint(0, top), rng.choice([5, 1000])
            ids = [s.ids_for(f, after, top, limit=most) for s in stores]
            assert ids[0] == ids[1], (seed, f)
    finally:
        for s in stores:
            s.close()
