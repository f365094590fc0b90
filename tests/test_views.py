"""The dashboard's store reads (litejobs/store/views.py), randomised: random jobs (tasks,
queues, tags, workflow runs, texts, states reached by really running, delaying and
cancelling them), random filters, random page sizes and scan bounds. Walking the pages
(``older``, and ``searched_to`` when the scan stopped) yields exactly the matching jobs,
newest first, none twice; the capped count and a bulk action's id pages agree. The seed is
printed; LITEJOBS_VIEWS_SEED replays one, LITEJOBS_VIEWS_ROUNDS runs more."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs.store import views
from litejobs.store.views import JobFilter
from litejobs.testing import run_until_idle

TASKS = ["v.common", "v.other", "v.rare", "v.fails"]
QUEUES = ["default", "mail", "reports"]
TAGS = ["red", "green", "blue"]
WORDS = ["apple", "Banana", 'qu"ote', "zebra", "café"]
STATES = [s.value for s in litejobs.State]


def make_app(path: Path) -> litejobs.App:
    app = litejobs.App(path)

    def ok(*args: Any, **kwargs: Any) -> None:
        return None

    def bad(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"bad {args[0] if args else ''}")

    for name in TASKS:
        app.task(name=name, retries=0)(bad if name == "v.fails" else ok)
    return app


def build(app: litejobs.App, rng: random.Random, n: int) -> float:
    """``n`` jobs of every kind; returns a moment between the first and second half."""
    middle = 0.0
    for i in range(n):
        if i == n // 2:
            middle = time.time()
            while time.time() == middle:
                pass
        task = rng.choices(TASKS, weights=[60, 25, 2, 13])[0]
        options: dict[str, Any] = {"queue": rng.choice(QUEUES)}
        if rng.random() < 0.3:
            options["tags"] = rng.sample(TAGS, rng.randint(1, 2))
        if rng.random() < 0.15:
            options["delay"] = 3600
        word = rng.choice(WORDS) if rng.random() < 0.3 else "plain"
        app.tasks[task].options(**options).enqueue(i, word, note=rng.choice(WORDS))
        if rng.random() < 0.03:
            flow = app.workflow("w")
            a = flow.add(app.tasks["v.common"].prepare(i, "step"))
            flow.add(app.tasks[rng.choice(TASKS)].prepare(i, "step"), after=a)
            flow.enqueue()
    run_until_idle(app, max_jobs=n // 3)  # some run (succeeded, failed), some stay queued
    for job in app.jobs(state="queued", limit=n):
        if rng.random() < 0.1:
            job.cancel()
    return middle


def matches(job: litejobs.Job, f: JobFilter) -> bool:
    d = job.to_dict()
    if f.states and d["state"] not in f.states:
        return False
    if f.task is not None and d["task"] != f.task:
        return False
    if f.queue is not None and d["queue"] != f.queue:
        return False
    if f.tag is not None and f.tag not in d["tags"]:
        return False
    if f.workflow is not None and d["workflow"] != f.workflow:
        return False
    created = job.created_at.timestamp()
    if f.since is not None and created < f.since:
        return False
    if f.until is not None and created >= f.until:
        return False
    if f.text:
        stored = (json.dumps(d["args"], ensure_ascii=False, separators=(",", ":"))
                  + json.dumps(d["kwargs"], ensure_ascii=False, separators=(",", ":"))
                  + (d["error"] or ""))
        needle = f.text.lower()
        escaped = json.dumps(f.text, ensure_ascii=False)[1:-1].lower()
        if needle not in stored.lower() and escaped not in stored.lower():
            return False
    return True


def random_filter(rng: random.Random, middle: float, runs: list[int]) -> JobFilter:
    def maybe(p: float, value: Any) -> Any:
        return value if rng.random() < p else None

    states = tuple(rng.sample(STATES, rng.randint(1, 3))) if rng.random() < 0.5 else ()
    return JobFilter(
        states=states, task=maybe(0.4, rng.choice(TASKS)), queue=maybe(0.3, rng.choice(QUEUES)),
        tag=maybe(0.25, rng.choice(TAGS)),
        workflow=maybe(0.1, rng.choice(runs)) if runs else None,
        text=maybe(0.2, rng.choice([*WORDS, "BANANA", "bad", "zzz"])),
        since=maybe(0.15, middle), until=maybe(0.15, middle))


def walk(store: Any, f: JobFilter, limit: int, scan: int) -> list[int]:
    seen: list[int] = []
    before = None
    for _ in range(10_000):
        page = store.job_page(f, before, limit, scan)
        assert len(page.rows) <= limit
        ids = [int(r["id"]) for r in page.rows]
        assert ids == sorted(ids, reverse=True)
        assert before is None or all(i < before for i in ids)
        seen += ids
        assert page.older is None or page.searched_to is None
        before = page.older if page.older is not None else page.searched_to
        if before is None:
            return seen
        if page.searched_to is None:
            assert len(ids) == limit  # only a full page points further
    raise AssertionError("the pages never ended")


def test_pages_counts_and_bulk_ids_match_a_model(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seed = int(os.environ.get("LITEJOBS_VIEWS_SEED") or random.randrange(2**32))
    rounds = int(os.environ.get("LITEJOBS_VIEWS_ROUNDS") or 60)
    print(f"LITEJOBS_VIEWS_SEED={seed}")
    rng = random.Random(seed)
    app = make_app(tmp_path / "jobs.db")
    middle = build(app, rng, 400)
    everything = app.jobs(limit=100_000)
    runs = sorted({j.workflow for j in everything if j.workflow is not None})
    store = app.store
    for r in range(rounds):
        f = random_filter(rng, middle, runs)
        limit, scan = rng.randint(1, 40), rng.choice([3, 17, 60, 250, 50_000])
        monkeypatch.setattr(views, "STATE_EXACT", rng.choice([0, 5, 5_000]))
        want = [j.id for j in everything if matches(j, f)]
        why = f"seed {seed}, round {r}: {f}, limit {limit}, scan {scan}"
        assert walk(store, f, limit, scan) == want, why
        cap = rng.choice([0, 3, 10_000])
        assert store.count_jobs(f, cap) == min(len(want), cap + 1), why
        upto = rng.choice([store.top_job_id(), max(want, default=0) - 1])
        batches: list[int] = []
        after = 0
        while ids := store.ids_for(f, after, upto, rng.randint(1, 50)):
            batches += ids
            after = ids[-1]
        assert batches == sorted(i for i in want if i <= upto), why
