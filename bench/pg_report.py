"""The report of bench/postgres.py: bench/results-postgres.md, from the cells it measured."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import platform
import sys
import tempfile

#: The labels the targets compare: litejobs on PostgreSQL and Procrastinate (bench/postgres.py).
TARGET_LJ, TARGET_PEER = "litejobs + PostgreSQL", "Procrastinate + PostgreSQL"


def fmt_rate(v) -> str:
    return "—" if v is None else f"{v / 1000:,.1f}k" if v >= 10_000 else f"{v:,.0f}"


def show(w: str, v) -> str:
    if v is None:
        return "—"
    if w == "latency":
        return " / ".join(f"{x:.1f}" for x in v)
    if w.startswith("drain"):
        return f"{fmt_rate(v[0])} ({fmt_rate(v[1])})"
    return fmt_rate(v)


def targets(value) -> list[str]:
    """Issue 16's targets for litejobs on PostgreSQL against Procrastinate."""
    rows = []
    for w, what, factor in (("enqueue", "enqueue 1-by-1", 1.0), ("bulk", "bulk", 1.0),
                            ("drain2", "drain, 2 workers", 3.0),
                            ("drain8", "drain, 8 workers / 2 supervisors", 3.0)):
        lj, pr = value(TARGET_LJ, w), value(TARGET_PEER, w)
        goal = "ahead of Procrastinate" if factor == 1.0 else f"≥ {factor:.0f}× Procrastinate"
        if lj is None or pr is None:
            rows.append(f"| {what} {goal} | not measured | — |")
            continue
        # a drain is judged from starting the workers, as bench/peers.py judges it; the
        # first→last rate (no start-up) is shown beside it
        extra = (f" (first→last task: {fmt_rate(lj[1])}/s vs {fmt_rate(pr[1])}/s = "
                 f"{lj[1] / pr[1]:.2f}×)" if isinstance(lj, tuple) else "")
        lj, pr = (lj[0], pr[0]) if isinstance(lj, tuple) else (lj, pr)
        rows.append(f"| {what} {goal} | {fmt_rate(lj)}/s vs {fmt_rate(pr)}/s = {lj / pr:.2f}×"
                    f"{extra} | {'met' if lj >= factor * pr else '**missed**'} |")
    lat_lj, lat_pr = value(TARGET_LJ, "latency"), value(TARGET_PEER, "latency")
    for k, name in ((0, "p50"), (2, "p99")):
        if lat_lj is None or lat_pr is None:
            rows.append(f"| pickup {name} below Procrastinate's | not measured | — |")
        else:
            met = "met" if lat_lj[k] < lat_pr[k] else "**missed**"
            rows.append(f"| pickup {name} below Procrastinate's | {lat_lj[k]:.2f} ms vs "
                        f"{lat_pr[k]:.2f} ms | {met} |")
    return rows


def ratios(value, label) -> list[str]:
    """``label``'s figures over Procrastinate's, "—" where either is missing."""
    out = []
    for w, k in (("enqueue", None), ("bulk", None), ("drain2", 0), ("drain8", 0),
                 ("latency", 0), ("latency", 2)):
        v, p = value(label, w), value(TARGET_PEER, w)
        if v is None or p is None:
            out.append("—")
            continue
        if k is not None:
            v, p = v[k], p[k]
        r = p / v if w == "latency" else v / p
        out.append(f"{r:.2f}" if v > 0 else "—")
    return out


def write_report(opts, n, reps, systems, results, ceiling, versions, broken, services, elapsed,
                 loads) -> str:
    def value(label, w):
        c = results.get((label, w))
        return c.value() if c else None

    def cell(label, w) -> str:
        if label in broken:
            return "not run"
        c = results.get((label, w))
        if c is None:
            return "—"
        v = c.value()
        return show(w, v) if v is not None else ("fails" if c.error else "—")

    import psycopg
    import psycopg_pool
    cpu = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    args = " ".join(a for a in sys.argv[1:] if not a.startswith("--out"))
    settings = ", ".join(f"{k} = {v}" for k, v in services.settings.items())
    lines = [
        "# litejobs, Procrastinate and Celery on one PostgreSQL", "",
        f"Written by `{f'python bench/postgres.py {args}'.rstrip()}` — N = {n:,} no-op jobs, "
        f"median of {reps} repetition(s); the run took {elapsed / 60:.1f} min."
        + (" A short run: with one repetition the figures carry all of the machine's noise, "
           "and with a small N a drain's from-start figure is mostly the workers' start-up "
           "(the first→last rate in brackets is not)." if reps == 1 or n < 5000 else ""), "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPU(s): {cpu}, "
        f"{mem:.1f} GiB RAM; load average {loads[0][0]:.1f} at the start, {loads[1][0]:.1f} "
        "at the end (other work on the machine makes the figures noisy)",
        f"- Python {platform.python_version()}; psycopg {psycopg.__version__}, psycopg_pool "
        f"{psycopg_pool.__version__}",
        f"- {services.pg_version or services.pg_error}, one throwaway cluster on 127.0.0.1 "
        f"(TCP), data in {tempfile.gettempdir()} ({services.fstype}): {settings}; everything "
        "else the defaults",
        "- versions: " + ", ".join(f"{m.removeprefix('pg_')} {v}"
                                   for m, v in sorted(versions.items())), "",
        f"## Targets (issue 16): {TARGET_LJ} against Procrastinate", "",
        "| target | measured | verdict |", "|---|---|---|", *targets(value), "",
        "## Results (jobs/s unless stated; higher is better, latency lower is better)", "",
        "| system | enqueue 1-by-1 /s | bulk /s | drain, 2 workers /s (first→last task) | "
        "drain, 8 workers on 2 supervisors /s (first→last) | pickup p50 / p95 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for lab, _, _ in systems:
        lines.append(f"| {lab} | " + " | ".join(
            cell(lab, w) for w in ("enqueue", "bulk", "drain2", "drain8", "latency")) + " |")
    lines += ["", "### As a multiple of Procrastinate", "",
              "Each figure over Procrastinate's (drain: from start; pickup: Procrastinate's "
              "time over this one): above 1 is better than Procrastinate.", "",
              "| system | enqueue | bulk | drain, 2 | drain, 8 | pickup p50 | pickup p99 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for lab, _, _ in systems:
        lines.append(f"| {lab} | " + " | ".join(ratios(value, lab)) + " |")
    lines += ["", "### PostgreSQL ceiling (raw psycopg, same server, one process)", "",
              "The same table shape as bench/peers/ceiling.py's SQLite one "
              "(bench/peers/pg_ceiling.py), on a fresh database: what the server gives with "
              "no job system around it, for the workload named.", "",
              "| measurement | bounds | jobs/s |", "|---|---|---:|"]
    for lab, w, c in ceiling:
        v = c.value() if c else None
        shown = fmt_rate(v) if v is not None else ("fails: " + c.error.splitlines()[0]
                                                   if c and c.error else "—")
        lines.append(f"| {lab} | {w} | {shown} |")
    lines += ["", "## What each figure means", "",
              "Every task is the same no-op that records `(job id, time.time())` with one "
              "`write` to an O_APPEND file (`bench/peers/common.py`); the measurements are "
              "bench/peers.py's own (`w_enqueue`, `w_bulk`, `w_drain`, `w_latency`), each on a "
              "fresh database (a new PostgreSQL database, or a new SQLite file).", "",
              "- **enqueue 1-by-1**: N calls of the system's enqueue from the harness process, "
              "each its own transaction (commit and WAL flush each), one after the other.",
              "- **bulk**: N jobs through the bulk API in chunks of 1000 (litejobs "
              "`enqueue_many`, Procrastinate `batch_defer`); Celery has none (\"—\").",
              "- **drain**: N jobs queued beforehand (bulk where possible), timed from starting "
              "the worker processes (their start-up included) until the N-th task has started; "
              "in brackets the rate between the first and the last task start (no start-up). "
              "2 workers: one supervisor/worker process with 2 (Procrastinate: 2 processes × "
              "concurrency 1); 8 workers: 2 such processes with 4 each.",
              "- **pickup**: 2 workers started and warmed up with one job, then 200 jobs "
              "10 ms apart; enqueue → start is the task's `time.time()` minus the harness's "
              "`time.time()` just before the enqueue call.", "",
              "How each system runs:", ""]
    for mod in dict.fromkeys(m for _, m, _ in systems):
        with contextlib.suppress(Exception):
            labs = ", ".join(lab for lab, m, _ in systems if m == mod)
            lines.append(f"- {labs}: {importlib.import_module(mod).WORKERS}")
    errs = [(lab, w, c.error.splitlines()[0]) for (lab, w), c in results.items() if c.error]
    lines += ["", "## What failed, and why", ""]
    if not broken and not errs:
        lines.append("Nothing: every system ran every workload.")
    lines += [f"- **{lab}**: not run — {why}" for lab, why in broken.items()]
    lines += [f"- **{lab}**, {w}: {e}" for lab, w, e in errs]
    text = "\n".join(lines) + "\n"
    with open(opts.out, "w", encoding="utf-8") as f:
        f.write(text)
    return text
