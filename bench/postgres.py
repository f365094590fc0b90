"""litejobs, Procrastinate and Celery on one local PostgreSQL, side by side (issue 16, "Figures").

    python bench/postgres.py [--jobs N] [--quick] [--repeat R] [--only NAME,...]
                             [--timeout S] [--budget MIN] [--out FILE]

Creates bench/.venv-postgres (bench/requirements-postgres.txt plus this repo with its
``postgres`` extra, editable) and re-runs itself inside it. Starts one throwaway PostgreSQL
cluster on 127.0.0.1 (a free port, a temp dir) with durable settings: fsync, synchronous_commit
and full_page_writes on (the server's defaults, set explicitly) and max_connections 200; stops
it and deletes its files at the end, whatever happened. Each system gets a fresh database in it
for each measurement. Systems:

- litejobs on PostgreSQL: ``litejobs.App("postgresql://...")`` and ``litejobs run --database
  postgresql://...`` (API.md, "Scale-out on PostgreSQL"); until the PostgreSQL store is wired
  into App, this line reports the one-line refusal and is not run;
- Procrastinate (LISTEN/NOTIFY);
- Celery with its broker and its result backend both on that PostgreSQL (bench/peers/pg_celery.py
  says exactly how);
- litejobs on a SQLite file (durability "full"), the reference line.

Workloads, on a no-op task that records (job id, start time) with one write (bench/peers/
common.py), run by bench/peers.py's own measurement functions:

- enqueue one by one: N jobs from one process;
- bulk: N jobs in chunks of 1000 where the system has a bulk API (else "—");
- drain, 2 workers: N queued jobs, from starting the workers until all have run;
- drain, 8 workers across 2 supervisor/worker processes: the same with 2 × 4;
- pickup latency: 2 idle warmed-up workers, 200 jobs 10 ms apart, enqueue → task start.

Medians of R repetitions (default 3; --quick: N = 1000, R = 1) go to bench/results-postgres.md.
Every phase has a timeout; the whole run has a budget after which the cells left are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv-postgres")
REQS = os.path.join(HERE, "requirements-postgres.txt")
ADAPTERS = os.path.join(HERE, "peers")

#: The server's durability settings, explicit so the figures say what they were taken with.
PG_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
               "max_connections": "200"}
#: What the report shows of the running server (SHOW name).
PG_SHOWN = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "wal_level",
            "shared_buffers", "max_connections", "checkpoint_timeout", "max_wal_size")

# label, adapter module (bench/peers/), Peer keyword arguments
SYSTEMS = [
    ("litejobs + PostgreSQL", "pg_litejobs", {"store": "postgres"}),
    ("Procrastinate + PostgreSQL", "pg_procrastinate", {}),
    ("Celery + PostgreSQL (broker + results)", "pg_celery", {}),
    ("litejobs + SQLite (full), reference", "pg_litejobs", {"store": "sqlite"}),
]
TARGET_LJ, TARGET_PEER = SYSTEMS[0][0], SYSTEMS[1][0]


def ensure_venv() -> None:
    """Create/refresh bench/.venv-postgres and re-exec this script inside it."""
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    digest = hashlib.sha256()
    for path in (REQS, os.path.join(REPO, "pyproject.toml")):
        with open(path, "rb") as f:
            digest.update(f.read())
    want, stamp, have = digest.hexdigest(), os.path.join(VENV, ".installed"), ""
    with contextlib.suppress(OSError), open(stamp) as f:
        have = f.read().strip()
    if not os.path.exists(py):
        print(f"postgres: creating {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        with open(os.path.join(VENV, ".gitignore"), "w") as f:
            f.write("*\n")  # never committed by accident
    if have != want:
        print("postgres: installing bench/requirements-postgres.txt and litejobs[postgres] (-e)",
              flush=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "-r", REQS, "-e", f"{REPO}[postgres]"],
                       check=True)
        with open(stamp, "w") as f:
            f.write(want)
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


def load_peers():
    """bench/peers.py as a module (its workloads, Services, Ctx, Cell), by path: the folder
    bench/peers/ would shadow nothing, but a name clash is not worth the doubt."""
    spec = importlib.util.spec_from_file_location("peers_harness", os.path.join(HERE, "peers.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def make_services(peers, base: str):
    class PgServices(peers.Services):
        """peers.Services with this benchmark's explicit server settings; no redis."""

        def __init__(self, base: str) -> None:
            super().__init__(base)
            self.settings: dict[str, str] = {}

        def start_pg(self) -> None:
            try:
                if not os.path.isdir("/usr/lib/postgresql"):
                    peers.apt_install("postgresql")
                bins = sorted((d for d in os.listdir("/usr/lib/postgresql")
                               if os.path.isdir(f"/usr/lib/postgresql/{d}/bin")), key=int)
                self.pg_bin = f"/usr/lib/postgresql/{bins[-1]}/bin"
                self.pg_dir = os.path.join(self.base, "pg")
                os.makedirs(self.pg_dir)
                os.chmod(self.base, 0o755)
                su = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
                if su:
                    shutil.chown(self.pg_dir, "postgres", "postgres")
                self.pg_port = peers.free_port()
                # --no-sync only skips initdb's own flush of the new files; the server's
                # settings are the -c ones
                subprocess.run([*su, f"{self.pg_bin}/initdb", "-D", f"{self.pg_dir}/data",
                                "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
                               check=True, capture_output=True, timeout=120)
                opts = " ".join(f"-c {k}={v}" for k, v in PG_SETTINGS.items())
                subprocess.run([*su, f"{self.pg_bin}/pg_ctl", "-D", f"{self.pg_dir}/data", "-w",
                                "-t", "60", "-l", f"{self.pg_dir}/log", "-o",
                                f"-p {self.pg_port} -k {self.pg_dir} "
                                f"-c listen_addresses=127.0.0.1 {opts}", "start"],
                               check=True, capture_output=True, timeout=90)
                self.pg_version = subprocess.run(
                    [f"{self.pg_bin}/postgres", "--version"], check=False, capture_output=True,
                    text=True).stdout.strip()
                import psycopg
                with psycopg.connect(self.dsn(), autocommit=True) as c:
                    self.settings = {k: str(c.execute(f"SHOW {k}").fetchone()[0])
                                     for k in PG_SHOWN}
            except Exception as e:
                detail = getattr(e, "stderr", b"") or b""
                self.pg_error = (f"PostgreSQL did not start: {e} "
                                 f"{detail.decode(errors='replace')}").strip()

    return PgServices(base)


def probe(mod, kw, ctx) -> str:
    """'' when the system's Peer can be made (store open, schema in place), else why not."""
    try:
        mod.Peer(ctx, "probe", **kw).close()
        return ""
    except Exception as e:
        return f"{type(e).__name__}: {e}".splitlines()[0][:300]


def main() -> int:
    ensure_venv()
    sys.path.insert(0, ADAPTERS)
    peers = load_peers()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=None, help="N (default 10000; --quick 1000)")
    ap.add_argument("--quick", action="store_true", help="N=1000, 1 repetition")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    ap.add_argument("--only", default="", help="comma-separated substrings of system labels")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds one drain/latency phase may take (default 180, quick 60)")
    ap.add_argument("--budget", type=float, default=None,
                    help="minutes for the whole run; cells left after it are skipped "
                         "(default 60, quick 15)")
    ap.add_argument("--out", default=os.path.join(HERE, "results-postgres.md"))
    opts = ap.parse_args()
    n = opts.jobs or (1000 if opts.quick else 10_000)
    reps = opts.repeat or (1 if opts.quick else 3)
    timeout = opts.timeout or (60.0 if opts.quick else 180.0)
    budget = 60 * (opts.budget or (15.0 if opts.quick else 60.0))
    only = [s.strip().lower() for s in opts.only.split(",") if s.strip()]
    systems = [s for s in SYSTEMS if not only or any(o in s[0].lower() for o in only)]
    workloads = [("enqueue", peers.w_enqueue, {}), ("bulk", peers.w_bulk, {}),
                 ("drain2", peers.w_drain, {"workers": 2}),
                 ("drain8", peers.w_drain, {"workers": 8}),
                 ("latency", peers.w_latency, {"workers": 2})]

    # SIGTERM/SIGHUP end the run through the finally below: workers and the server are stopped
    def stop(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)

    t0 = time.monotonic()
    load_before = os.getloadavg()
    base = tempfile.mkdtemp(prefix="litejobs-pgbench-")
    workdir = os.path.join(base, "work")
    os.makedirs(workdir)
    services = make_services(peers, base)
    print(f"postgres: N={n}, {reps} repetition(s), files in {base}", flush=True)
    results: dict[tuple[str, str], object] = {}
    versions: dict[str, str] = {}
    broken: dict[str, str] = {}
    try:
        services.start_pg()
        if services.pg_error:
            print("postgres:", services.pg_error, flush=True)
            return 1
        print(f"postgres: {services.pg_version} on port {services.pg_port}: "
              + ", ".join(f"{k}={v}" for k, v in services.settings.items()), flush=True)
        ctx = peers.Ctx(workdir, services)
        modules = {}
        for label, modname, kw in systems:
            try:
                modules[modname] = modules.get(modname) or importlib.import_module(modname)
                versions[modname] = str(getattr(modules[modname], "VERSION", "?"))
            except Exception as e:
                broken[label] = f"import failed: {type(e).__name__}: {e}"
                continue
            if why := probe(modules[modname], kw, ctx):
                broken[label] = why
            print(f"  {label:<40} {'ready' if not why else 'not run: ' + why}", flush=True)
        for rep in range(reps):
            print(f"--- repetition {rep + 1}/{reps}", flush=True)
            for label, modname, kw in systems:
                if label in broken:
                    continue
                for wname, wfn, wkw in workloads:
                    cell = results.setdefault((label, wname), peers.Cell())
                    if cell.error and not cell.samples:
                        continue  # failed before: don't pay its timeout again
                    if time.monotonic() - t0 > budget:
                        cell.error = cell.error or "skipped: the run's time budget was spent"
                        continue
                    tag = f"{modname}-{'-'.join(map(str, kw.values()))}-{wname}-r{rep}"
                    took = peers.attempt(cell, partial(wfn, modules[modname], {**kw, **wkw},
                                                       ctx, n, tag, timeout))
                    print(f"  {label:<40} {wname:<8} {show(wname, cell.value()):>24}  "
                          f"({took:.1f} s) {cell.error}", flush=True)
    finally:
        services.stop()
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - t0
    report = write_report(opts, n, reps, systems, results, versions, broken, services, elapsed,
                          (load_before, os.getloadavg()))
    print(report)
    print(f"postgres: done in {elapsed / 60:.1f} min; wrote {opts.out}", flush=True)
    return 0


# --- report -----------------------------------------------------------------------------------


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
        lj, pr = (lj[0] if isinstance(lj, tuple) else lj), (pr[0] if isinstance(pr, tuple) else pr)
        goal = "ahead of Procrastinate" if factor == 1.0 else f"≥ {factor:.0f}× Procrastinate"
        if lj is None or pr is None:
            rows.append(f"| {what} {goal} | not measured | — |")
        else:
            rows.append(f"| {what} {goal} | {fmt_rate(lj)}/s vs {fmt_rate(pr)}/s = "
                        f"{lj / pr:.2f}× | {'met' if lj >= factor * pr else '**missed**'} |")
    lat_lj, lat_pr = value(TARGET_LJ, "latency"), value(TARGET_PEER, "latency")
    for k, name in ((0, "p50"), (2, "p99")):
        if lat_lj is None or lat_pr is None:
            rows.append(f"| pickup {name} below Procrastinate's | not measured | — |")
        else:
            met = "met" if lat_lj[k] < lat_pr[k] else "**missed**"
            rows.append(f"| pickup {name} below Procrastinate's | {lat_lj[k]:.2f} ms vs "
                        f"{lat_pr[k]:.2f} ms | {met} |")
    return rows


def write_report(opts, n, reps, systems, results, versions, broken, services, elapsed,
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
        f"median of {reps} repetition(s); the run took {elapsed / 60:.1f} min.", "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPU(s): {cpu}, "
        f"{mem:.1f} GiB RAM; load average {loads[0][0]:.1f} at the start, {loads[1][0]:.1f} "
        "at the end (other work on the machine makes the figures noisy)",
        f"- Python {platform.python_version()}; psycopg {psycopg.__version__}, psycopg_pool "
        f"{psycopg_pool.__version__}",
        f"- {services.pg_version or services.pg_error}, one throwaway cluster on 127.0.0.1 "
        f"(TCP), data in {tempfile.gettempdir()}: {settings}; everything else the defaults",
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


if __name__ == "__main__":
    sys.exit(main())
