"""litejobs, Procrastinate and Celery on one local PostgreSQL, side by side (issue 16, "Figures").

    python bench/postgres.py [--jobs N] [--quick] [--repeat R] [--only NAME,...]
                             [--workloads W,...] [--timeout S] [--budget MIN] [--out FILE]

Creates bench/.venv-postgres (bench/requirements-postgres.txt plus this repo with its
``postgres`` extra, editable) and re-runs itself inside it. Starts one throwaway PostgreSQL
cluster on 127.0.0.1 (a free port, a temp dir) with durable settings: fsync, synchronous_commit
and full_page_writes on (the server's defaults, set explicitly) and max_connections 200; stops
it and deletes its files at the end, whatever happened. Each system gets a fresh database in it
for each measurement. Systems:

- litejobs on PostgreSQL: ``litejobs.App("postgresql://...")`` and ``litejobs run --database
  postgresql://...`` (API.md, "Scale-out on PostgreSQL");
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
import hashlib
import importlib
import importlib.util
import os
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

# label, the workload it bounds, measurement(pg_ceiling module, DSN of a fresh database, n)
CEILING = [
    ("raw INSERT, one per transaction", "enqueue", lambda c, dsn, n: c.insert(dsn, n)),
    ("raw executemany, 1000 per transaction", "bulk", lambda c, dsn, n: c.bulk(dsn, n)),
    ("raw SKIP LOCKED claim/complete, 1 per transaction", "drain",
     lambda c, dsn, n: c.claim(dsn, n, 1)),
    ("raw SKIP LOCKED claim/complete, 100 per transaction", "drain",
     lambda c, dsn, n: c.claim(dsn, n, 100)),
]

# label, adapter module (bench/peers/), Peer keyword arguments
SYSTEMS = [
    ("litejobs + PostgreSQL", "pg_litejobs", {"store": "postgres"}),
    ("Procrastinate + PostgreSQL", "pg_procrastinate", {}),
    ("Celery + PostgreSQL (broker + results)", "pg_celery", {}),
    ("litejobs + SQLite (full), reference", "pg_litejobs", {"store": "sqlite"}),
]


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
    """bench/peers.py as a module (its workloads, Services, Ctx, Cell), loaded by path:
    ``import peers`` would have to choose between it and the adapters' folder bench/peers/."""
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
            self.fstype = "?"

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
                self.fstype = subprocess.run(
                    ["df", "--output=fstype", self.pg_dir], check=False, capture_output=True,
                    text=True).stdout.split()[-1:][0] or "?"
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


def end_children(peers) -> None:
    """Kill whatever this run started that is still there (workers are stopped by
    bench/peers.py's ``workers``; this is for a run cut short in the middle of that)."""
    for pid in peers.proc_tree(os.getpid())[1:]:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # each worker command leads its own session
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


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
    sys.path.insert(0, HERE)
    peers = load_peers()
    from pg_report import TARGET_LJ, TARGET_PEER, show, write_report
    assert {TARGET_LJ, TARGET_PEER} <= {label for label, _, _ in SYSTEMS}
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=None, help="N (default 10000; --quick 1000)")
    ap.add_argument("--quick", action="store_true", help="N=1000, 1 repetition")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    ap.add_argument("--only", default="", help="comma-separated substrings of system labels")
    ap.add_argument("--workloads", default="",
                    help="comma-separated workloads to run (enqueue, bulk, drain2, drain8, "
                         "latency; default all): e.g. latency alone, for short A/B runs")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds one drain/latency phase may take (default 180, quick 60)")
    ap.add_argument("--budget", type=float, default=None,
                    help="minutes for the whole run; cells left after it are skipped "
                         "(default 60, quick 15)")
    ap.add_argument("--celery-poll", type=float, default=None,
                    help="the polling_interval of Celery's PostgreSQL broker in seconds "
                         "(default: kombu's, 1.0)")
    ap.add_argument("--out", default=os.path.join(HERE, "results-postgres.md"))
    opts = ap.parse_args()
    if opts.celery_poll is not None:  # read by bench/peers/pg_celery.py, workers included
        os.environ["CELERY_PG_POLL"] = str(opts.celery_poll)
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
    if opts.workloads:
        chosen = {w.strip() for w in opts.workloads.split(",") if w.strip()}
        if unknown := chosen - {w for w, _, _ in workloads}:
            ap.error(f"unknown workload(s) {', '.join(sorted(unknown))}: choose among "
                     + ", ".join(w for w, _, _ in workloads))
        workloads = [w for w in workloads if w[0] in chosen]
    # the ceiling rows bound enqueue, bulk and drain: measured only when one of those runs
    ceilings = [c for c in CEILING if any(w[0].startswith(c[1]) for w in workloads)]

    # SIGTERM/SIGHUP end the run through the finally below: workers and the server are stopped
    def stop(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the cleanup
            signal.signal(sig, signal.SIG_IGN)
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
    ceiling: dict[str, object] = {}
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
            import pg_ceiling
            for k, (label, _, fn) in enumerate(ceilings):
                cell = ceiling.setdefault(label, peers.Cell())
                peers.attempt(cell, lambda fn=fn, k=k: fn(pg_ceiling, ctx.fresh_pg(f"ceiling_{k}"),
                                                          n))
                print(f"  {label:<52} {show('enqueue', cell.value()):>10}/s {cell.error}",
                      flush=True)
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
        end_children(peers)
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - t0
    rows = [(label, w, ceiling.get(label)) for label, w, _ in CEILING]
    report = write_report(opts, n, reps, systems, results, rows, versions, broken, services,
                          elapsed, (load_before, os.getloadavg()))
    print(report)
    print(f"postgres: done in {elapsed / 60:.1f} min; wrote {opts.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
