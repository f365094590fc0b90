"""``/metrics``: the file's figures in Prometheus text format (extra ``web``: prometheus_client).

``render(app)`` reads everything from the database file, so any process can serve it (``litejobs
serve``, ``run --serve``, a web app's own route) and every scrape sees every supervisor. The
counters are the totals the supervisors add up in the file (``litejobs.figures``): they survive
restarts and add up across supervisors. Names, types and labels (docs/metrics.md):

- ``litejobs_jobs{queue,state}`` gauge: jobs by queue and state;
- ``litejobs_job_outcomes_total{task,outcome}`` counter: ended attempts (succeeded, failed,
  retried, timeout, crashed) and jobs cancelled or expired;
- ``litejobs_job_duration_seconds{task}`` histogram: how long ended attempts ran;
- ``litejobs_pickup_delay_seconds{queue}`` histogram: from a job's due time to its start;
- ``litejobs_queue_oldest_ready_seconds{queue}`` gauge: how long the oldest ready job waits;
- ``litejobs_workers{state}`` gauge: live supervisors' workers, busy, idle or starting;
- ``litejobs_supervisors`` gauge: supervisors with a heartbeat in the last ``LIVE`` seconds;
- ``litejobs_cron_fires_total{entry,outcome}`` counter: fired, skipped_overlap, skipped_misfire.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from litejobs.errors import ConfigError
from litejobs.figures import BUCKETS, OUTCOMES
from litejobs.job import State

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.store import Store

__all__ = ["LIVE", "render"]

#: A supervisor whose heartbeat (every 5 s) is older than this is not counted, nor its workers.
LIVE = 15.0
WORKER_STATES = ("busy", "idle", "starting")
CRON_OUTCOMES = ("fired", "skipped_overlap", "skipped_misfire")


def render(app: App, now: float | None = None) -> tuple[bytes, str]:
    """The Prometheus text of ``app``'s file, and its content type."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    except ImportError:
        raise ConfigError("/metrics needs the 'web' extra (prometheus_client is not "
                          "installed): pip install 'litejobs[web]'") from None
    registry = CollectorRegistry(auto_describe=False)
    collector: Any = _Collector(app.store, time.time() if now is None else now)  # duck-typed
    registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Collector:
    """A prometheus_client collector: each scrape reads the file once."""

    def __init__(self, store: Store, now: float) -> None:
        self.store = store
        self.now = now

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        store, now = self.store, self.now
        counts = store.job_counts()
        queues = sorted({q for q, _ in counts} | {q for q, _ in store.queue_list()})
        jobs = GaugeMetricFamily("litejobs_jobs", "Jobs by queue and state.",
                                 labels=["queue", "state"])
        for q in queues:
            for s in State:
                jobs.add_metric([q, s.value], counts.get((q, s.value), 0))
        yield jobs

        oldest = store.oldest_ready(now)
        ready = GaugeMetricFamily("litejobs_queue_oldest_ready_seconds",
                                  "Seconds the oldest ready (queued) job of a queue has been "
                                  "due; 0 when none is.", labels=["queue"])
        for q in sorted(set(queues) | set(oldest)):
            ready.add_metric([q], oldest.get(q, 0.0))
        yield ready

        totals: dict[str, dict[str, dict[str, float]]] = {}
        for name, label, kind, value in store.metric_totals():
            totals.setdefault(name, {}).setdefault(label, {})[kind] = value
        outcomes = CounterMetricFamily(
            "litejobs_job_outcomes", "Ended attempts by task and outcome (succeeded, failed "
            "for good, retried, timeout, crashed), and jobs cancelled or expired.",
            labels=["task", "outcome"])
        for task, kinds in sorted(totals.get("outcome", {}).items()):
            for outcome in OUTCOMES:
                outcomes.add_metric([task, outcome], kinds.get(outcome, 0.0))
        yield outcomes
        yield _histogram(HistogramMetricFamily, "litejobs_job_duration_seconds",
                         "Run time of ended attempts, by task.", "task",
                         totals.get("duration", {}))
        yield _histogram(HistogramMetricFamily, "litejobs_pickup_delay_seconds",
                         "Seconds from a job's due time to its start, by queue.", "queue",
                         totals.get("pickup", {}))
        cron = CounterMetricFamily("litejobs_cron_fires", "Cron instants by entry and outcome.",
                                   labels=["entry", "outcome"])
        for entry, kinds in sorted(totals.get("cron", {}).items()):
            for outcome in CRON_OUTCOMES:
                cron.add_metric([entry, outcome], kinds.get(outcome, 0.0))
        yield cron

        live = {s["id"] for s in store.supervisors() if now - s["heartbeat_at"] <= LIVE}
        supervisors = GaugeMetricFamily("litejobs_supervisors",
                                        f"Supervisors with a heartbeat in the last {LIVE:g} s.")
        supervisors.add_metric([], len(live))
        yield supervisors
        states = dict.fromkeys(WORKER_STATES, 0)
        for w in store.workers():
            if w["supervisor"] in live and w["state"] in states:
                states[w["state"]] += 1
        workers = GaugeMetricFamily("litejobs_workers", "Workers of live supervisors by state.",
                                    labels=["state"])
        for state, n in states.items():
            workers.add_metric([state], n)
        yield workers


def _histogram(family: Any, name: str, doc: str, label: str,
               rows: dict[str, dict[str, float]]) -> Any:
    """A histogram family from stored per-bucket counts (not cumulative) and sums."""
    out = family(name, doc, labels=[label])
    for value, kinds in sorted(rows.items()):
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for bound in BUCKETS:
            running += kinds.get(bound, 0.0)
            buckets.append((_le(bound), running))
        out.add_metric([value], buckets, sum_value=kinds.get("sum", 0.0))
    return out


def _le(bound: str) -> str:
    """A bucket's bound as Prometheus writes it (``1.0``, ``+Inf``)."""
    value = float(bound)
    return "+Inf" if math.isinf(value) else repr(value)
