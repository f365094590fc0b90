"""litejobs against its peers, side by side, in one run on one machine.

    python bench/peers.py [--jobs N] [--quick] [--repeat R] [--only NAME,...] [--out FILE]

Creates bench/.venv-peers (from bench/requirements-peers.txt plus this repo, editable) and
re-runs itself inside it; starts redis-server and PostgreSQL on 127.0.0.1 (Debian packages,
installed with apt-get when missing) in a temporary directory, and stops them at the end. Then,
for each system, on the same workload (a no-op task that only records that it ran):

- enqueue one by one: N jobs from one process;
- bulk enqueue: N jobs in chunks of 1000, where the system has a bulk API (else "—");
- drain: N queued jobs run by 2 workers, from starting the workers until all have run;
- pickup latency: an idle worker, 200 jobs 10 ms apart, enqueue → task start p50/p95/p99.

Plus the SQLite ceiling (raw apsw) in the same run. Medians of R repetitions go to
bench/RESULTS.md (and a chart to bench/results.png). Each adapter lives in bench/peers/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv-peers")
REQS = os.path.join(HERE, "requirements-peers.txt")
ADAPTERS = os.path.join(HERE, "peers")
CHUNK = 1000
LAT_COUNT, LAT_GAP = 200, 0.010


# --- the virtualenv ---------------------------------------------------------------------------


def ensure_venv() -> None:
    """Create/refresh bench/.venv-peers and re-exec this script inside it."""
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    digest = hashlib.sha256()
    for path in (REQS, os.path.join(REPO, "pyproject.toml")):
        with open(path, "rb") as f:
            digest.update(f.read())
    want = digest.hexdigest()
    stamp = os.path.join(VENV, ".installed")
    have = ""
    with contextlib.suppress(OSError), open(stamp) as f:
        have = f.read().strip()
    if not os.path.exists(py):
        print(f"peers: creating {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if have != want:
        print("peers: installing bench/requirements-peers.txt and litejobs (-e)", flush=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "-U", "pip"], check=False)
        subprocess.run([py, "-m", "pip", "install", "-q", "-r", REQS, "-e", REPO], check=True)
        with open(stamp, "w") as f:
            f.write(want)
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


# --- services ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def apt_install(*pkgs: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


class Services:
    """redis-server and a throwaway PostgreSQL cluster, each on a free port in a temp dir."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_url = ""
        self.redis_error = ""
        self.redis_version = ""
        self.pg_dir = ""
        self.pg_bin = ""
        self.pg_port = 0
        self.pg_error = ""
        self.pg_version = ""

    def start_redis(self) -> None:
        try:
            if not shutil.which("redis-server"):
                apt_install("redis-server")
            port = free_port()
            d = os.path.join(self.base, "redis")
            os.makedirs(d)
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(port)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            self.redis_version = subprocess.run(["redis-server", "--version"], check=False,
                                                capture_output=True, text=True).stdout.strip()
        except Exception as e:
            self.redis_error = f"redis-server did not start: {e}"

    def start_pg(self) -> None:
        try:
            bins = sorted(d for d in os.listdir("/usr/lib/postgresql")
                          if os.path.isdir(f"/usr/lib/postgresql/{d}/bin")
                          ) if os.path.isdir("/usr/lib/postgresql") else []
            if not bins:
                apt_install("postgresql")
                bins = sorted(os.listdir("/usr/lib/postgresql"))
            self.pg_bin = f"/usr/lib/postgresql/{bins[-1]}/bin"
            self.pg_dir = os.path.join(self.base, "pg")
            os.makedirs(self.pg_dir)
            os.chmod(self.base, 0o755)
            shutil.chown(self.pg_dir, "postgres", "postgres")
            self.pg_port = free_port()
            su = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*su, f"{self.pg_bin}/initdb", "-D", f"{self.pg_dir}/data",
                            "-A", "trust", "-U", "postgres", "--no-sync"],
                           check=True, capture_output=True)
            subprocess.run([*su, f"{self.pg_bin}/pg_ctl", "-D", f"{self.pg_dir}/data", "-w",
                            "-l", f"{self.pg_dir}/log", "-o",
                            f"-p {self.pg_port} -k {self.pg_dir} -c listen_addresses=127.0.0.1",
                            "start"], check=True, capture_output=True)
            self.pg_version = subprocess.run([f"{self.pg_bin}/postgres", "--version"], check=False,
                                             capture_output=True, text=True).stdout.strip()
        except Exception as e:
            detail = getattr(e, "stderr", b"") or b""
            self.pg_error = f"PostgreSQL did not start: {e} {detail.decode(errors='replace')}"

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{db}"

    def stop(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis.wait(10)
        if self.pg_port and os.path.isdir(f"{self.pg_dir}/data"):
            su = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*su, f"{self.pg_bin}/pg_ctl", "-D", f"{self.pg_dir}/data", "-m",
                            "fast", "-w", "stop"], capture_output=True, check=False)


@dataclass
class Ctx:
    """What an adapter gets: where to put files, the servers, the interpreter."""
    workdir: str
    services: Services
    python: str = sys.executable

    @property
    def redis_url(self) -> str:
        if not self.services.redis_url:
            raise RuntimeError(self.services.redis_error or "no redis")
        return self.services.redis_url

    def flush_redis(self) -> None:
        import redis
        r = redis.Redis.from_url(self.redis_url)
        r.flushall()
        r.close()

    def db(self, name: str) -> str:
        path = os.path.join(self.workdir, name)
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
        return path

    def fresh_pg(self, name: str) -> str:
        """A new empty PostgreSQL database; returns its DSN."""
        if not self.services.pg_port:
            raise RuntimeError(self.services.pg_error or "no PostgreSQL")
        import psycopg
        with psycopg.connect(self.services.dsn(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        return self.services.dsn(name)


# --- workers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def workers(peer, ctx: Ctx, mark: str, log: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env.update(peer.worker_env())
    env["PEERS_MARK"] = mark
    env["PYTHONPATH"] = ADAPTERS
    env["TASKITO_PYTHON"] = sys.executable
    procs = []
    with open(log, "ab") as out:
        for cmd in peer.worker_cmds():
            procs.append(subprocess.Popen(cmd, cwd=ADAPTERS, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    try:
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # the group: forked children too
            p.wait()


def wait_marks(mark: str, n: int, procs, deadline: float, log: str) -> None:
    from common import count
    while count(mark) < n:
        if all(p.poll() is not None for p in procs):
            raise RuntimeError(f"workers exited early ({[p.returncode for p in procs]}): "
                               + tail(log))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count(mark)}/{n} jobs done")
        time.sleep(0.002)


def tail(path: str, n: int = 600) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        data = f.read()
        return data[-n:].decode(errors="replace").replace("\n", " | ")
    return ""


# --- the workloads ----------------------------------------------------------------------------


def w_enqueue(mod, kw, ctx, n, tag, timeout):
    peer = mod.Peer(ctx, tag, **kw)
    try:
        start = time.perf_counter()
        for i in range(n):
            peer.enqueue(i)
        return n / (time.perf_counter() - start)
    finally:
        peer.close()


def w_bulk(mod, kw, ctx, n, tag, timeout):
    if getattr(mod.Peer, "enqueue_bulk", None) is None:
        return None
    peer = mod.Peer(ctx, tag, **kw)
    try:
        start = time.perf_counter()
        for lo in range(0, n, CHUNK):
            peer.enqueue_bulk(list(range(lo, min(n, lo + CHUNK))))
        return n / (time.perf_counter() - start)
    finally:
        peer.close()


def w_drain(mod, kw, ctx, n, tag, timeout):
    peer = mod.Peer(ctx, tag, **kw)
    mark = os.path.join(ctx.workdir, f"mark-{tag}")
    log = os.path.join(ctx.workdir, f"log-{tag}")
    try:
        if getattr(peer, "enqueue_bulk", None) is not None:
            for lo in range(0, n, CHUNK):
                peer.enqueue_bulk(list(range(lo, min(n, lo + CHUNK))))
        else:
            for i in range(n):
                peer.enqueue(i)
        start = time.perf_counter()
        with workers(peer, ctx, mark, log) as procs:
            try:
                wait_marks(mark, n, procs, time.monotonic() + timeout, log)
            except TimeoutError as e:
                took = time.perf_counter() - start
                from common import count
                raise TimeoutError(f"timeout after {took:.0f} s: {e} "
                                   f"(≈{count(mark) / took:,.0f} jobs/s)") from None
            took = time.perf_counter() - start
        from common import read
        starts = sorted(read(mark).values())
        busy = starts[-1] - starts[0]
        return (n / took, (n - 1) / busy if busy > 0 else float("nan"))
    finally:
        peer.close()


def w_latency(mod, kw, ctx, n, tag, timeout):
    from common import read
    peer = mod.Peer(ctx, tag, **kw)
    mark = os.path.join(ctx.workdir, f"mark-{tag}")
    log = os.path.join(ctx.workdir, f"log-{tag}")
    try:
        with workers(peer, ctx, mark, log) as procs:
            # warm-up job: when it has run, the workers are up and idle
            peer.enqueue(-1)
            wait_marks(mark, 1, procs, time.monotonic() + 60, log)
            time.sleep(0.5)
            sent: dict[int, float] = {}
            for i in range(LAT_COUNT):
                sent[i] = time.time()
                peer.enqueue(i)
                time.sleep(LAT_GAP)
            wait_marks(mark, LAT_COUNT + 1, procs, time.monotonic() + timeout, log)
        started = read(mark)
        ms = sorted((started[i] - sent[i]) * 1000.0 for i in sent)
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return (statistics.median(ms), cuts[94], cuts[98])
    finally:
        peer.close()


WORKLOADS = [("enqueue", w_enqueue), ("bulk", w_bulk), ("drain", w_drain),
             ("latency", w_latency)]

# label, adapter module, Peer keyword arguments
SYSTEMS = [
    ("litejobs (full)", "p_litejobs", {"durability": "full"}),
    ("litejobs (fast)", "p_litejobs", {"durability": "fast"}),
    ("Huey + SQLite", "p_huey", {"kind": "sqlite"}),
    ("Huey + Redis", "p_huey", {"kind": "redis"}),
    ("RQ + Redis (fork)", "p_rq", {"worker": "fork"}),
    ("RQ + Redis (SimpleWorker)", "p_rq", {"worker": "simple"}),
    ("Celery + Redis (prefork 2)", "p_celery", {}),
    ("Procrastinate + PostgreSQL", "p_procrastinate", {}),
    ("taskito (SQLite, prefork 2)", "p_taskito", {}),
    ("tinyjobs (SQLite)", "p_tinyjobs", {}),
    ("DBOS queues (SQLite)", "p_dbos", {}),
]


# --- the SQLite ceiling -----------------------------------------------------------------------


def raw_conn(path: str, sync: str):
    import apsw
    c = apsw.Connection(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={sync}")
    c.execute("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, state INTEGER NOT NULL,"
              " task TEXT NOT NULL, args BLOB, created_at REAL, started_at REAL,"
              " finished_at REAL)")
    c.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id)")
    return c


def raw_insert(ctx, n, sync, tag):
    c = raw_conn(ctx.db(f"raw-{sync}-{tag}.db"), sync)
    sql = "INSERT INTO jobs(state, task, args, created_at) VALUES (0, 'noop', ?, ?)"
    start = time.perf_counter()
    for i in range(n):
        c.execute(sql, (b"[%d]" % i, time.time()))
    took = time.perf_counter() - start
    c.close()
    return n / took


def raw_bulk(ctx, n, tag):
    c = raw_conn(ctx.db(f"raw-bulk-{tag}.db"), "FULL")
    sql = "INSERT INTO jobs(state, task, args, created_at) VALUES (0, 'noop', ?, ?)"
    start = time.perf_counter()
    for lo in range(0, n, CHUNK):
        with c:
            c.executemany(sql, [(b"[%d]" % i, time.time()) for i in range(lo, min(n, lo + CHUNK))])
    took = time.perf_counter() - start
    c.close()
    return n / took


def raw_claim(ctx, n, tag, batch):
    """Claim + complete loop, one process, synchronous NORMAL: ``batch`` jobs per claim
    transaction and per completion transaction."""
    c = raw_conn(ctx.db(f"raw-claim-{batch}-{tag}.db"), "NORMAL")
    with c:
        c.executemany("INSERT INTO jobs(state, task, args, created_at) VALUES (0,'noop',?,?)",
                      [(b"[%d]" % i, time.time()) for i in range(n)])
    claim = ("UPDATE jobs SET state = 1, started_at = ? WHERE id IN "
             "(SELECT id FROM jobs WHERE state = 0 ORDER BY id LIMIT ?) RETURNING id")
    done = "UPDATE jobs SET state = 2, finished_at = ? WHERE id = ?"
    start = time.perf_counter()
    total = 0
    while total < n:
        c.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in c.execute(claim, (time.time(), batch))]
        c.execute("COMMIT")
        if not ids:
            break
        now = time.time()
        with c:
            c.executemany(done, [(now, i) for i in ids])
        total += len(ids)
    took = time.perf_counter() - start
    c.close()
    return total / took


CEILING = [
    ("raw insert, synchronous FULL", "enqueue",
     lambda ctx, n, tag: raw_insert(ctx, n, "FULL", tag)),
    ("raw insert, synchronous NORMAL", "enqueue",
     lambda ctx, n, tag: raw_insert(ctx, n, "NORMAL", tag)),
    ("raw executemany, 1000 per tx (FULL)", "bulk", raw_bulk),
    ("raw claim/complete, 1 per tx (NORMAL)", "drain",
     lambda ctx, n, tag: raw_claim(ctx, n, tag, 1)),
    ("raw claim/complete, 100 per tx (NORMAL)", "drain",
     lambda ctx, n, tag: raw_claim(ctx, n, tag, 100)),
]


# --- running ----------------------------------------------------------------------------------


@dataclass
class Cell:
    samples: list = field(default_factory=list)
    error: str = ""

    def value(self):
        vals = [s for s in self.samples if s is not None]
        if not vals:
            return None
        if isinstance(vals[0], tuple):
            return tuple(statistics.median(v[k] for v in vals) for k in range(len(vals[0])))
        return statistics.median(vals)


def show(w: str, v) -> str:
    if v is None:
        return "—"
    if w == "latency":
        return " / ".join(f"{x:.1f}" for x in v)
    if w == "drain":
        return f"{fmt_rate(v[0])} ({fmt_rate(v[1])})"
    return fmt_rate(v)


def fmt_rate(v) -> str:
    if v is None:
        return "—"
    return f"{v / 1000:,.1f}k" if v >= 10_000 else f"{v:,.0f}"


def main() -> int:
    ensure_venv()
    sys.path.insert(0, ADAPTERS)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000, help="N (default 10000)")
    ap.add_argument("--quick", action="store_true",
                    help="N=1000 (unless --jobs), 1 repetition: a few minutes")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    ap.add_argument("--only", default="", help="comma-separated substrings of system labels")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds one drain/latency phase may take (default 300, quick 60)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--chart", default=os.path.join(HERE, "results.png"))
    opts = ap.parse_args()
    n = opts.jobs if (not opts.quick or "--jobs" in " ".join(sys.argv)) else 1000
    reps = opts.repeat or (1 if opts.quick else 3)
    timeout = opts.timeout or (60.0 if opts.quick else 300.0)
    only = [s.strip().lower() for s in opts.only.split(",") if s.strip()]
    systems = [s for s in SYSTEMS if not only or any(o in s[0].lower() for o in only)]

    t0 = time.monotonic()
    base = tempfile.mkdtemp(prefix="litejobs-peers-")
    workdir = os.path.join(base, "work")
    os.makedirs(workdir)
    services = Services(base)
    print(f"peers: N={n}, {reps} repetition(s), files in {base}", flush=True)
    services.start_redis()
    services.start_pg()
    for err in (services.redis_error, services.pg_error):
        if err:
            print("peers:", err, flush=True)
    ctx = Ctx(workdir, services)

    results: dict[tuple[str, str], Cell] = {}
    versions: dict[str, str] = {}
    notes: dict[str, str] = {}
    broken: dict[str, str] = {}
    ceiling: dict[str, Cell] = {}
    try:
        modules = {}
        for _label, modname, _ in systems:
            if modname in modules or modname in broken:
                continue
            try:
                modules[modname] = importlib.import_module(modname)
                versions[modname] = str(getattr(modules[modname], "VERSION", "?"))
                notes[modname] = getattr(modules[modname], "WORKERS", "")
            except Exception as e:
                broken[modname] = f"import failed: {type(e).__name__}: {e}"
        for rep in range(reps):
            print(f"--- repetition {rep + 1}/{reps}", flush=True)
            for label, _, fn in CEILING:
                cell = ceiling.setdefault(label, Cell())
                try:
                    cell.samples.append(fn(ctx, n, f"r{rep}"))
                except Exception as e:
                    cell.error = f"{type(e).__name__}: {e}"
                print(f"  {label:<44} {fmt_rate(cell.value()):>10}/s {cell.error}", flush=True)
            for label, modname, kw in systems:
                if modname in broken:
                    continue
                for wname, wfn in WORKLOADS:
                    cell = results.setdefault((label, wname), Cell())
                    if cell.error and not cell.samples:
                        continue  # failed before: don't pay its timeout again
                    tag = f"{modname}-{'-'.join(map(str, kw.values()))}-{wname}-r{rep}"
                    t = time.monotonic()
                    try:
                        cell.samples.append(wfn(modules[modname], kw, ctx, n, tag, timeout))
                        cell.error = ""
                    except Exception as e:
                        cell.error = f"{type(e).__name__}: {e}"[:400]
                        if os.environ.get("PEERS_DEBUG"):
                            traceback.print_exc()
                    v = cell.value()
                    shown = show(wname, v)
                    print(f"  {label:<30} {wname:<8} {shown:>18}  ({time.monotonic() - t:.1f} s)"
                          f" {cell.error}", flush=True)
    finally:
        services.stop()
    elapsed = time.monotonic() - t0
    write_report(opts, n, reps, systems, results, ceiling, versions, notes, broken, services,
                 elapsed)
    try:
        chart(opts.chart, systems, results, n)
        print(f"peers: chart in {opts.chart}")
    except Exception as e:
        print(f"peers: no chart ({type(e).__name__}: {e})", file=sys.stderr)
    shutil.rmtree(base, ignore_errors=True)
    print(f"peers: done in {elapsed / 60:.1f} min; wrote {opts.out}", flush=True)
    return 0


# --- report -----------------------------------------------------------------------------------


def machine_lines(services: Services) -> list[str]:
    import apsw
    cpu = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.1f} GiB RAM"
    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPU(s): {cpu}, "
        f"{mem}",
        f"- Python {platform.python_version()}, SQLite {apsw.sqlite_lib_version()} "
        f"(apsw {apsw.apsw_version()})",
        f"- {services.redis_version or services.redis_error or 'redis: not used'}",
        f"- {services.pg_version or services.pg_error or 'PostgreSQL: not used'} "
        "(default settings: fsync and synchronous_commit on)",
        f"- temp files on {tempfile.gettempdir()}",
    ]


def write_report(opts, n, reps, systems, results, ceiling, versions, notes, broken, services,
                 elapsed) -> None:
    def val(label, w):
        c = results.get((label, w))
        v = c.value() if c else None
        return v[0] if w == "drain" and v is not None else v

    def cell_text(label, w, unit=""):
        c = results.get((label, w))
        mod = next(m for lab, m, _ in systems if lab == label)
        if mod in broken:
            return "not run"
        if c is None:
            return "—"
        v = c.value()
        if v is None:
            return "fails" if c.error else "—"
        return show(w, v)

    peers = [lab for lab, _, _ in systems if not lab.startswith("litejobs")]
    lj = [lab for lab, _, _ in systems if lab.startswith("litejobs")]

    def best_peer(w):
        vals = [(val(p, w), p) for p in peers if val(p, w) is not None]
        if not vals:
            return None, None
        if w == "latency":
            return min(vals, key=lambda x: x[0][0])
        return max(vals)

    ceil = {lab: c.value() for lab, c in ceiling.items()}
    lines = [
        "# litejobs and its peers",
        "",
        f"Written by `python bench/peers.py{' --quick' if opts.quick else ''}"
        f"{'' if opts.quick and n == 1000 else f' --jobs {n}'}"
        f"{f' --repeat {reps}' if opts.repeat else ''}` — N = {n} no-op jobs, "
        f"median of {reps} repetition(s); the run took {elapsed / 60:.1f} min.",
        "",
        *machine_lines(services),
        "",
        "Peer versions: " + ", ".join(f"{m.removeprefix('p_')} {v}" for m, v in sorted(
            versions.items())) + ".",
        "",
        "## Results (jobs/s unless stated; higher is better, latency lower is better)",
        "",
        "| system | enqueue 1-by-1 /s | bulk /s | drain, 2 workers /s (first→last task) | "
        "pickup p50 / p95 / p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for lab, _, _ in systems:
        lines.append(f"| {lab} | {cell_text(lab, 'enqueue')} | {cell_text(lab, 'bulk')} | "
                     f"{cell_text(lab, 'drain')} | {cell_text(lab, 'latency')} |")
    lines += ["", "### SQLite ceiling (raw apsw, same run, one process, WAL)", "",
              "| measurement | jobs/s |", "|---|---:|"]
    for lab, v in ceil.items():
        shown = fmt_rate(v) if v is not None else "fails: " + ceiling[lab].error
        lines.append(f"| {lab} | {shown} |")

    ceil_for = {
        ("litejobs (full)", "enqueue"): "raw insert, synchronous FULL",
        ("litejobs (fast)", "enqueue"): "raw insert, synchronous NORMAL",
        ("litejobs (full)", "bulk"): "raw executemany, 1000 per tx (FULL)",
        ("litejobs (fast)", "bulk"): "raw executemany, 1000 per tx (FULL)",
        ("litejobs (full)", "drain"): "raw claim/complete, 100 per tx (NORMAL)",
        ("litejobs (fast)", "drain"): "raw claim/complete, 100 per tx (NORMAL)",
    }
    lines += ["", "## litejobs as a ratio", "",
              "Ratio to the fastest peer in this run (for latency: peer p50 / litejobs p50, so "
              "above 1 means litejobs is quicker) and to the SQLite ceiling.", "",
              "| litejobs | workload | value | fastest peer | × fastest peer | SQLite ceiling "
              "| × ceiling |", "|---|---|---:|---|---:|---|---:|"]
    for lab in lj:
        for w in ("enqueue", "bulk", "drain", "latency"):
            v = val(lab, w)
            bv, bp = best_peer(w)
            if v is None:
                lines.append(f"| {lab} | {w} | {cell_text(lab, w)} | {bp or '—'} | — | — | — |")
                continue
            if w == "latency":
                shown = f"{v[0]:.2f} ms p50"
                ratio = f"{bv[0] / v[0]:.2f}" if bv and v[0] > 0 else "—"
                peer_txt = f"{bp} ({bv[0]:.2f} ms)" if bp else "—"
                lines.append(f"| {lab} | {w} | {shown} | {peer_txt} | {ratio} | — | — |")
                continue
            ratio = f"{v / bv:.2f}" if bv else "—"
            cl = ceil_for.get((lab, w))
            cv = ceil.get(cl) if cl else None
            lines.append(f"| {lab} | {w} | {fmt_rate(v)}/s | "
                         f"{f'{bp} ({fmt_rate(bv)}/s)' if bp else '—'} | {ratio} | "
                         f"{cl or '—'} | {f'{v / cv:.2f}' if cv else '—'} |")

    errs = [(lab, w, c.error) for (lab, w), c in results.items() if c.error]
    lines += ["", "## What failed, and why", ""]
    if not broken and not errs:
        lines.append("Nothing: every system ran every workload.")
    for mod, e in broken.items():
        labs = ", ".join(lab for lab, m, _ in systems if m == mod)
        lines.append(f"- **{labs}**: could not be run — {e}")
    for lab, w, e in errs:
        lines.append(f"- **{lab}**, {w}: {e}")
    lines += ["", "## How each system is run", "",
              "Every task is the same no-op that records `(job id, time.time())` with one "
              "`write` to an O_APPEND file (`bench/peers/common.py`); the harness counts those "
              "records to know when a drain is finished and reads the start times for the "
              "latency. Enqueue: one call per job from the harness process on a fresh store "
              "(empty Redis / new SQLite file / new PostgreSQL database). Bulk: chunks of "
              f"{CHUNK} through the system's bulk API, \"—\" where it has none. Drain: N jobs "
              "queued beforehand (bulk where possible), timed from starting the workers (their "
              "start-up included) until the N-th record; in brackets, the rate between the "
              "first and the last task start, i.e. without start-up (with a small N start-up "
              "dominates the first figure). Latency: workers started and warmed "
              f"up with one job, then {LAT_COUNT} jobs {LAT_GAP * 1000:.0f} ms apart; "
              "enqueue→start is the task's `time.time()` minus the harness's `time.time()` "
              "just before the enqueue call.", ""]
    for mod, note in notes.items():
        labs = ", ".join(lab for lab, m, _ in systems if m == mod)
        lines.append(f"- {labs}: {note}")
    lines.append("")
    with open(opts.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[lines.index("## Results (jobs/s unless stated; higher is better, "
                                      "latency lower is better)"):]))


def chart(path, systems, results, n) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(20, 6))
    titles = {"enqueue": "enqueue 1-by-1 (jobs/s, log)", "bulk": "bulk enqueue (jobs/s, log; "
              "blank: no bulk API)", "drain": "drain N, 2 workers, start-up incl. (jobs/s, log)",
              "latency": "pickup p50 (ms, log; lower is better)"}
    for ax, w in zip(axes, titles, strict=True):
        labs, vals = [], []
        for lab, _, _ in systems:
            c = results.get((lab, w))
            v = c.value() if c else None
            labs.append(lab)
            vals.append(float("nan") if v is None else v[0] if isinstance(v, tuple) else v)
        colors = ["tab:red" if lab.startswith("litejobs") else "tab:gray" for lab in labs]
        ax.barh(labs, vals, color=colors)
        ax.set_xscale("log")
        ax.set_title(titles[w])
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"litejobs (red) and its peers: N = {n}, {platform.node() or 'this machine'}, "
                 f"{os.cpu_count()} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
