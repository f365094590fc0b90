"""/metrics and the figures behind it: counted by real supervisors on real files, read back with
prometheus_client's own parser; the store's figure reads, cron, cancels and pruning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs.figures import BUCKETS, Figures
from litejobs.services.pruner import METRIC_MINUTES, Pruner
from litejobs.ticker import Ticker, build_entries
from tests.conftest import APP_SPEC, REPO, launch_supervisor, wait_for

TERMINAL = {"succeeded", "failed", "cancelled"}


def scrape(app: litejobs.App) -> dict[str, Any]:
    """/metrics parsed by prometheus_client: {sample name: {labels as a sorted tuple: value}}."""
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    from litejobs.metrics import render

    body, content_type = render(app)
    assert content_type.startswith("text/plain")
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return float(samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


def outcomes_of(samples: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {(dict(k)["task"], dict(k)["outcome"]): v
            for k, v in samples.get("litejobs_job_outcomes_total", {}).items() if v}


def check_histogram(samples: dict[str, Any], name: str, label: str, what: str) -> float:
    """The histogram of ``what`` is cumulative and ends at its _count; returns the count."""
    buckets = {dict(k)["le"]: v for k, v in samples[f"{name}_bucket"].items()
               if dict(k)[label] == what}
    bounds = sorted(buckets, key=float)
    assert bounds[-1] == "+Inf" and len(bounds) == len(BUCKETS)
    counts = [buckets[b] for b in bounds]
    assert counts == sorted(counts), counts  # cumulative
    count = value(samples, f"{name}_count", **{label: what})
    assert counts[-1] == count
    assert value(samples, f"{name}_sum", **{label: what}) >= 0.0
    return count


def ended(app: litejobs.App, ids: list[int]) -> bool:
    return all(app.get_job(i).state.value in TERMINAL for i in ids)


# --- a real supervisor ------------------------------------------------------------------------


def test_metrics_count_what_a_supervisor_ran(app, start_supervisor) -> None:
    """Succeeded, failed then succeeded, failed for good, timed out, expired and cancelled
    jobs: each counter, histogram and gauge says what happened."""
    sup = start_supervisor(workers=2)
    ids = [app.enqueue("basic.add", args=[i, 1]).id for i in range(5)]
    ids += [app.enqueue("basic.context", kwargs={"fail_first": True}).id for _ in range(2)]
    ids += [app.enqueue("basic.fail").id for _ in range(2)]
    ids.append(app.enqueue("basic.overrun", args=[5.0]).id)
    app.store.set_paused("held", True)
    expiring = app.enqueue("basic.add", args=[0, 0], queue="held", expires=0.2).id
    doomed = app.enqueue("basic.add", args=[0, 0], queue="held")
    assert doomed.cancel()
    wait_for(lambda: ended(app, [*ids, expiring]), 30, "every job to end",
             details=sup.output)
    want = {("basic.add", "succeeded"): 5, ("basic.context", "retried"): 2,
            ("basic.context", "succeeded"): 2, ("basic.fail", "failed"): 2,
            ("basic.overrun", "timeout"): 1, ("basic.add", "expired"): 1,
            ("basic.add", "cancelled"): 1}
    # written at most a second after they happen (the claimer's poll)
    samples = wait_for(lambda: (s := scrape(app)) and outcomes_of(s) == want and s, 10,
                       "the outcome counters", details=lambda: repr(outcomes_of(scrape(app))))
    attempts = {"basic.add": 5, "basic.context": 4, "basic.fail": 2, "basic.overrun": 1}
    for task, n in attempts.items():
        assert check_histogram(samples, "litejobs_job_duration_seconds", "task", task) == n
    overran = {dict(k)["le"]: v for k, v in samples["litejobs_job_duration_seconds_bucket"]
               .items() if dict(k)["task"] == "basic.overrun"}
    assert overran["0.25"] == 0 and overran["1.0"] == 1  # stopped at its 0.5 s timeout
    # every start was claimed at least once (a job given back unstarted counts again)
    assert check_histogram(samples, "litejobs_pickup_delay_seconds", "queue", "default") >= 12
    assert value(samples, "litejobs_jobs", queue="default", state="succeeded") == 7
    assert value(samples, "litejobs_jobs", queue="default", state="failed") == 3
    assert value(samples, "litejobs_jobs", queue="held", state="cancelled") == 2
    assert value(samples, "litejobs_jobs", queue="default", state="queued") == 0
    assert value(samples, "litejobs_queue_oldest_ready_seconds", queue="default") == 0
    assert value(samples, "litejobs_supervisors") == 1
    workers = wait_for(lambda: (ws := app.store.workers()) and {
        int(w["pid"]) for w in ws} == sup.worker_pids() and ws, 15,
        "a heartbeat naming the workers (one was replaced after the timeout)")
    assert all(w["state"] in ("busy", "idle", "starting") and w["jobs_done"] >= 0
               for w in workers)
    samples = scrape(app)
    assert sum(value(samples, "litejobs_workers", state=s)
               for s in ("busy", "idle", "starting")) == 2


def test_workers_in_the_heartbeat_name_the_running_job(app, start_supervisor) -> None:
    start_supervisor(workers=1)
    job = app.enqueue("basic.slow", args=[30])
    wait_for(lambda: app.get_job(job.id).state.value == "running", 10, "the job to start")

    def busy() -> dict[str, Any] | None:
        rows = [w for w in app.store.workers() if w["state"] == "busy"]
        return rows[0] if rows else None

    w = wait_for(busy, 10, "a heartbeat naming the busy worker")  # within one heartbeat
    assert (w["job"], w["task"]) == (job.id, "basic.slow")
    assert w["started_at"] <= time.time() and w["rss"] > 1 << 20
    attempt_worker = app.store.attempts(job.id)[-1].worker
    assert w["name"] == attempt_worker


def _run(db: Path, tmp_path: Path, name: str, queues: str) -> Any:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'app = "{APP_SPEC}"\n')
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "1",
           "--config", str(cfg), "--queues", queues]
    return launch_supervisor(cmd, REPO, db, tmp_path / f"{name}.log")


def test_counters_survive_a_restart_and_add_up_across_supervisors(app, db_path,
                                                                   tmp_path) -> None:
    """A drained supervisor's figures are in the file; a second and third, side by side on
    other queues, add to them: the counters only go up."""
    started = []
    try:
        first = _run(db_path, tmp_path, "first", "a,b")
        started.append(first)
        ids = [app.enqueue("basic.add", args=[i, 0], queue="a").id for i in range(4)]
        wait_for(lambda: ended(app, ids), 20, "the first jobs", details=first.output)
        first.send(signal.SIGTERM)
        assert first.wait(20) == 0
        samples = scrape(app)  # written at the drain, not a second later
        assert outcomes_of(samples) == {("basic.add", "succeeded"): 4}
        assert value(samples, "litejobs_supervisors") == 0
        before = samples
        second = _run(db_path, tmp_path, "second", "a")
        third = _run(db_path, tmp_path, "third", "b")
        started += [second, third]
        ids = [app.enqueue("basic.add", args=[i, 0], queue=q).id
               for i in range(3) for q in ("a", "b")]
        ids.append(app.enqueue("basic.fail", queue="b").id)
        wait_for(lambda: ended(app, ids), 20, "the second jobs")
        workers = {a.worker.rsplit(":", 1)[0] for i in ids for a in app.store.attempts(i)}
        assert len(workers) == 2  # both supervisors ran jobs
        want = {("basic.add", "succeeded"): 10, ("basic.fail", "failed"): 1}
        after = wait_for(lambda: (s := scrape(app)) and outcomes_of(s) == want and s, 10,
                         "the counters of both supervisors added up")
        for name, series in before.items():
            if name.endswith(("_total", "_count", "_sum", "_bucket")):
                for labels, v in series.items():
                    assert after[name][labels] >= v, (name, labels)
        assert value(after, "litejobs_pickup_delay_seconds_count", queue="b") == 4
        assert value(after, "litejobs_pickup_delay_seconds_count", queue="a") >= 7
        assert value(after, "litejobs_supervisors") == 2
    finally:
        for sup in started:
            sup.kill_group()


# --- in process: cron, pruning, the reads ------------------------------------------------------


def test_cron_fires_and_skips_are_counted_in_the_tick(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "cron.db")

    @app.cron("*/10 * * * *", name="every10", misfire="latest", catchup=1800, overlap="allow")
    def every10() -> None:
        return None

    t0 = 1_780_000_000.0 - 1_780_000_000.0 % 3600  # on the hour
    ticker = Ticker(app, app.store, build_entries(app))
    ticker.run_once(t0 + 30)
    assert ticker.run_once(t0 + 3900).fired == 1  # 6 instants due: 5 skipped, 1 fired
    Ticker(app, app.store, build_entries(app)).run_once(t0 + 3900)  # a second: nothing new
    totals = {(n, label, k): v for n, label, k, v in app.store.metric_totals()}
    assert totals == {("cron", "every10", "fired"): 1.0,
                      ("cron", "every10", "skipped_misfire"): 5.0}


def test_pruner_drops_old_minutes_and_keeps_the_totals(app) -> None:
    now = time.time()
    old = int((now - METRIC_MINUTES) // 60) - 5
    rows = [(old - i, "outcome", "t", "succeeded", 1.0) for i in range(700)]
    rows.append((int(now // 60), "outcome", "t", "failed", 2.0))
    app.store.write(lambda tx: tx.add_figures(rows))
    assert app.store.outcome_minutes(0)[:1] == [(old - 699, "succeeded", 1.0)]
    Pruner(app.store, retention=86400).run_once(now)
    assert app.store.outcome_minutes(0) == [(int(now // 60), "failed", 2.0)]
    assert sorted(app.store.metric_totals()) == [("outcome", "t", "failed", 2.0),
                                                 ("outcome", "t", "succeeded", 700.0)]


def test_outcome_minutes_sum_tasks_per_minute_oldest_first(app) -> None:
    m = 29_000_000
    app.store.write(lambda tx: tx.add_figures([
        (m + 1, "outcome", "a", "failed", 1.0), (m, "outcome", "a", "succeeded", 2.0),
        (m, "outcome", "b", "succeeded", 3.0), (m, "duration", "a", "sum", 9.0)]))
    app.store.write(lambda tx: tx.add_figures([(m, "outcome", "a", "succeeded", 1.0)]))
    assert app.store.outcome_minutes(m * 60) == [(m, "succeeded", 6.0), (m + 1, "failed", 1.0)]
    assert app.store.outcome_minutes((m + 1) * 60) == [(m + 1, "failed", 1.0)]


def test_job_counts_match_a_full_count(app, tasks) -> None:
    """job_counts (live states through their indexes, terminal ones cached by their cost)
    says what a GROUP BY over every row says."""
    import random

    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    jobs = app.enqueue_many([tasks.add.options(queue=rng.choice("xyz"),
                                               delay=rng.choice([0, 0, 3600])).prepare(i, 0)
                             for i in range(300)])
    app.store.cancel_many([j.id for j in jobs if rng.random() < 0.3], "test", time.time())
    full = {(q, s): n for (q, s), n in
            ((k, v) for q, counts in app.store.stats()["queues"].items()
             for k, v in (((q, s), n) for s, n in counts.items())) if n}
    assert app.store.job_counts() == full
    ready = app.store.oldest_ready(time.time() + 10)
    assert set(ready) == {q for q, s in full if s == "queued"}
    assert all(10 <= age < 60 for age in ready.values())


def test_figures_bucket_and_sum_in_memory() -> None:
    f = Figures()
    assert not f
    f.claimed([{"queue": "q", "run_at": 100.0}, {"queue": "q", "run_at": 99.0},
               {"queue": "q", "run_at": 200.0}], 100.5)
    rows = {(name, label, kind): v for _, name, label, kind, v in f.rows()}
    assert rows == {("pickup", "q", "0.5"): 1.0, ("pickup", "q", "2.5"): 1.0,
                    ("pickup", "q", "0.005"): 1.0, ("pickup", "q", "sum"): 2.0,
                    ("pickup", "q", "count"): 3.0}
    f.clear()
    assert not f and f.rows() == []


def test_render_without_prometheus_client_says_what_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "import litejobs; from litejobs.metrics import render\n"
            f"render(litejobs.App({str(tmp_path / 'x.db')!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode != 0
    assert "pip install 'litejobs[web]'" in out.stderr.splitlines()[-1]


def test_cancels_are_counted_in_their_transaction(app, tasks) -> None:
    """Store.cancel and cancel_many count the jobs they cancelled, per task, not the ones
    that were already over."""
    adds = [tasks.add.enqueue(i, 0) for i in range(4)]
    fails = [tasks.fail.enqueue() for _ in range(2)]
    assert adds[0].cancel()
    assert not adds[0].cancel()  # already cancelled: not counted again
    n = app.store.cancel_many([j.id for j in adds + fails], "bulk", time.time())
    assert n == 5
    totals = {(label, kind): v for name, label, kind, v in app.store.metric_totals()
              if name == "outcome"}
    assert totals == {("basic.add", "cancelled"): 4.0, ("basic.fail", "cancelled"): 2.0}
