"""The CI performance check: small litejobs benchmarks against bench/baseline.json.

    python bench/check.py [--update] [--tries T] [--baseline FILE]

Runs with the project's own virtualenv (litejobs only, no peers), in well under a minute:

- enqueue one by one: 2,000 jobs, durability "fast";
- enqueue_many: 20,000 jobs in chunks of 1000 (durability "full");
- drain: 5,000 queued jobs run by ``litejobs run --workers 2``, first task start to last finish;
- pickup latency p50: an idle supervisor, 50 jobs 10 ms apart, ``started_at - created_at``.

A CI machine's speed is unknown, so the throughput figures are ratios: litejobs divided by raw
SQLite (bench/peers/ceiling.py, apsw without a job system) doing the same amount of work on the
same machine in the same run — one-by-one inserts at synchronous NORMAL, executemany at FULL,
and claim/complete 100 per transaction. The latency is compared as it is, in ms, with slack.
Each figure is the best of a few tries (--tries, default 3), interleaved so that one burst of
noise from a neighbour does not hit every try of the same figure.

Prints a table either way and exits 1 only when a figure is more than 2× worse than its baseline
(or a measurement failed outright); ``--update`` writes the figures of this run as the new
baseline instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "peers")]

import ceiling  # noqa: E402  (bench/peers/ceiling.py)
import core  # noqa: E402  (bench/core.py: the same litejobs measurements, smaller)

BASELINE = os.path.join(HERE, "baseline.json")
ENQUEUE, BULK, DRAIN = 2_000, 20_000, 5_000
LAT_COUNT, LAT_GAP = 50, 0.010
RAW_RUNS = 3  # raw SQLite runs per try
WORSE = 2.0  # a figure fails when it is more than this many times worse than its baseline
# Latency is an absolute figure, maybe from another machine, and about 1 ms, where scheduler
# noise shows: the limit is WORSE × baseline plus this much.
LATENCY_SLACK_MS = 2.0


@dataclass
class Figure:
    name: str
    what: str
    litejobs: Callable[[str, str], float]  # (workdir, log) -> jobs/s, or ms for a latency
    raw: Callable[[str], float] | None = None  # workdir -> jobs/s; None: an absolute ms figure
    samples: list[float] = field(default_factory=list)
    raw_samples: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def unit(self) -> str:
        return "ratio" if self.raw else "ms"

    def value(self) -> float:
        """The best try: the highest rate over the highest raw rate, or the lowest latency."""
        if self.raw is None:
            return min(self.samples)
        return max(self.samples) / max(self.raw_samples)


FIGURES = [
    Figure("enqueue", f"enqueue 1-by-1, {ENQUEUE:,} jobs, fast ÷ raw insert NORMAL",
           lambda w, log: core.enqueue_one(w, ENQUEUE, "fast").value,
           lambda w: ceiling.insert(core.fresh(w, "raw-insert.db"), ENQUEUE, "NORMAL")),
    Figure("enqueue_many", f"enqueue_many, {BULK:,} jobs ÷ raw executemany (FULL)",
           lambda w, log: core.enqueue_bulk(w, BULK).value,
           lambda w: ceiling.bulk(core.fresh(w, "raw-bulk.db"), BULK)),
    Figure("drain", f"drain {DRAIN:,} jobs, 2 workers, first→last ÷ raw claim/complete ×100",
           lambda w, log: core.drain(w, DRAIN, log)[1].value,
           lambda w: ceiling.claim(core.fresh(w, "raw-claim.db"), DRAIN, 100)),
    Figure("pickup_p50", f"pickup latency p50, {LAT_COUNT} jobs {LAT_GAP * 1000:.0f} ms apart",
           lambda w, log: core.latency(w, LAT_COUNT, LAT_GAP, log)[0].value),
]


def limit(fig: Figure, base: float) -> float:
    """The worst value that still passes."""
    return base / WORSE if fig.raw else base * WORSE + LATENCY_SLACK_MS


def passes(fig: Figure, value: float, base: float) -> bool:
    return value >= limit(fig, base) if fig.raw else value <= limit(fig, base)


def measure(tries: int, workdir: str) -> None:
    log = os.path.join(workdir, "supervisor.log")
    for t in range(tries):
        for fig in FIGURES:
            if fig.error:
                continue  # it failed outright: a crash is not noise, do not retry it
            try:
                if fig.raw is not None:
                    # a raw run lasts only tens of ms, so one scheduler hiccup moves it a lot:
                    # being cheap, it gets a few runs per try
                    fig.raw_samples += [fig.raw(workdir) for _ in range(RAW_RUNS)]
                fig.samples.append(fig.litejobs(workdir, log))
            except (Exception, SystemExit) as e:  # core.py's helpers raise SystemExit
                fig.error = f"{type(e).__name__}: {e}"
            print(f"  try {t + 1}/{tries} {fig.name:<13} "
                  f"{fig.error or fmt(fig, fig.samples[-1], fig.raw_samples)}", flush=True)


def fmt(fig: Figure, value: float, raw: list[float]) -> str:
    if fig.raw is None:
        return f"{value:.2f} ms"
    return f"{value:,.0f} jobs/s (raw {raw[-1]:,.0f})"


def machine() -> str:
    import apsw
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPU(s), Python "
            f"{platform.python_version()}, SQLite {apsw.sqlite_lib_version()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update", action="store_true",
                    help="write this run's figures to the baseline file instead of judging")
    ap.add_argument("--tries", type=int, default=3, help="tries per figure, best kept (3)")
    ap.add_argument("--baseline", default=BASELINE, help="default bench/baseline.json")
    opts = ap.parse_args()

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="litejobs-check-")
    print(f"check: {opts.tries} tries per figure, files in {workdir}", flush=True)
    measure(opts.tries, workdir)
    failed = [f for f in FIGURES if f.error]

    base: dict[str, dict[str, float]] = {}
    if os.path.exists(opts.baseline) and not opts.update:
        with open(opts.baseline, encoding="utf-8") as f:
            base = json.load(f)["figures"]

    print(f"\n{'figure':<13} {'litejobs':>13} {'raw SQLite':>12} {'value':>9} "
          f"{'baseline':>9} {'limit':>9}  verdict")
    regressed = []
    for fig in FIGURES:
        if fig.error:
            print(f"{fig.name:<13} {'—':>13} {'—':>12} {'—':>9} {'—':>9} {'—':>9}  FAILED: "
                  f"{fig.error}")
            continue
        v = fig.value()
        best = min(fig.samples) if fig.raw is None else max(fig.samples)
        lj = f"{best:.2f} ms" if fig.raw is None else f"{best:,.0f}/s"
        raw = f"{max(fig.raw_samples):,.0f}/s" if fig.raw else "—"
        b = base.get(fig.name, {}).get("value")
        if b is None:
            verdict, shown_b, shown_l = ("new baseline" if opts.update else
                                         "no baseline"), "—", "—"
        else:
            ok = passes(fig, v, b)
            verdict = "ok" if ok else f"REGRESSED (over {WORSE:.0f}× worse)"
            if not ok:
                regressed.append(fig)
            shown_b, shown_l = f"{b:.3f}", f"{limit(fig, b):.3f}"
        print(f"{fig.name:<13} {lj:>13} {raw:>12} {v:>9.3f} {shown_b:>9} {shown_l:>9}  "
              f"{verdict}")
    print("(value: litejobs ÷ raw SQLite, higher is better; for pickup_p50, ms, lower is "
          "better)")
    for fig in FIGURES:
        print(f"  {fig.name}: {fig.what}")

    took = time.monotonic() - started
    if failed:
        print(f"\ncheck: {len(failed)} measurement(s) failed; files kept in {workdir} "
              f"({took:.0f} s)")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    if opts.update:
        doc = {
            "written": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "how": f"python bench/check.py --update (best of {opts.tries} tries)",
            "figures": {
                f.name: {"value": round(f.value(), 4), "unit": f.unit, "what": f.what,
                         "litejobs": round(max(f.samples) if f.raw else min(f.samples), 2),
                         **({"raw": round(max(f.raw_samples), 1)} if f.raw else {})}
                for f in FIGURES
            },
        }
        with open(opts.baseline, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"\ncheck: wrote {opts.baseline} ({took:.0f} s)")
        return 0
    if not base:
        print(f"\ncheck: no baseline in {opts.baseline}, nothing judged; write one with "
              f"--update ({took:.0f} s)")
        return 0
    if regressed:
        print(f"\ncheck: {', '.join(f.name for f in regressed)} regressed more than "
              f"{WORSE:.0f}× against {opts.baseline} ({took:.0f} s)")
        return 1
    print(f"\ncheck: ok, nothing more than {WORSE:.0f}× worse than {opts.baseline} "
          f"({took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
