"""litejobs against its peers, side by side, in one run on one machine.

    python bench/peers.py [--jobs N] [--quick] [--repeat R] [--only NAME,...] [--no-scaling]
                          [--out FILE] [--chart PNG]

Creates bench/.venv-peers (from bench/requirements-peers.txt plus this repo, editable) and
re-runs itself inside it; starts redis-server and PostgreSQL on 127.0.0.1 (Debian packages,
installed with apt-get when missing) in a temporary directory, and stops them at the end. Then,
for each system, on the same workload (a no-op task that only records that it ran):

- enqueue one by one: N jobs from one process;
- bulk enqueue: N jobs in chunks of 1000, where the system has a bulk API (else "—");
- drain: N queued jobs run by 2 workers, from starting the workers until all have run;
- pickup latency: an idle worker, 200 jobs 10 ms apart, enqueue → task start p50/p95/p99;
- 4 producers: while 2 workers drain, 4 processes enqueue N/5 jobs each one by one, all at
  once; p50/p99 and the slowest of single enqueue calls, and the aggregate enqueue rate.

Plus the SQLite ceiling (raw apsw) in the same run, and a scaling section for litejobs alone
(durability "full"): drain with 1, 2, 4, 8 workers; the rate over the first 10,000 jobs of a
10k, 100k and 1M backlog; the memory of supervisor + workers idle after start-up and after the
largest backlog has drained. Medians of R repetitions go to bench/RESULTS.md (and a chart to
bench/results.png). Each adapter lives in bench/peers/.
"""

from __future__ import annotations

import argparse
import array
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
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv-peers")
REQS = os.path.join(HERE, "requirements-peers.txt")
ADAPTERS = os.path.join(HERE, "peers")
PRODUCER = os.path.join(ADAPTERS, "producer.py")
CHUNK = 1000
LAT_COUNT, LAT_GAP = 200, 0.010
PRODUCERS = 4


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

    def files(self, tag: str) -> tuple[str, str]:
        """The mark file (tasks' start records) and the workers' log of one workload."""
        return (os.path.join(self.workdir, f"mark-{tag}"),
                os.path.join(self.workdir, f"log-{tag}"))

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


def peer_env(peer, mark: str) -> dict[str, str]:
    """The environment of a system's workers, and of its producers (which must reach the same
    store): the adapter's variables, the mark file, and bench/peers/ to import adapters from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEJOBS_")}
    env.update(peer.worker_env())
    env["PEERS_MARK"] = mark
    env["PYTHONPATH"] = ADAPTERS
    env["TASKITO_PYTHON"] = sys.executable
    return env


@contextlib.contextmanager
def workers(peer, ctx: Ctx, mark: str, log: str):
    env = peer_env(peer, mark)
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


@contextlib.contextmanager
def warm_workers(peer, ctx: Ctx, mark: str, log: str):
    """``workers``, once a warm-up job (id -1) has run: the workers are up and idle."""
    with workers(peer, ctx, mark, log) as procs:
        peer.enqueue(-1)
        wait_marks(mark, 1, procs, time.monotonic() + 60, log)
        yield procs


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
    mark, log = ctx.files(tag)
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
    mark, log = ctx.files(tag)
    try:
        with warm_workers(peer, ctx, mark, log) as procs:
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


def w_producers(mod, kw, ctx, n, tag, timeout):
    """PRODUCERS processes enqueue ``n // 5`` jobs each, one by one, all released at once, while
    the system's 2 workers (started and warmed up first) drain them. Returns p50 and p99 of a
    single enqueue call in ms, over all producers' calls, the aggregate enqueue rate (all calls /
    first start to last end), and the slowest call in ms: a few calls stuck behind a lock for
    hundreds of ms hide beyond p99 yet cost more time than all the rest. Counts as done only
    when every job has run."""
    from common import read
    from producer import ID_SPAN
    per = max(100, n // 5)
    peer = mod.Peer(ctx, tag, **kw)
    mark, log = ctx.files(tag)
    where = os.path.join(ctx.workdir, f"producers-{tag}")
    os.makedirs(where)
    prods: list[subprocess.Popen[bytes]] = []
    logs = [os.path.join(where, f"log-{k}") for k in range(PRODUCERS)]

    def failed() -> str:
        bad = [(k, p.returncode) for k, p in enumerate(prods) if p.poll() not in (None, 0)]
        return "; ".join(f"producer {k} exited {code}: {tail(logs[k])}" for k, code in bad)

    def wait_for(what, done, deadline):
        while not done():
            if err := failed():
                raise RuntimeError(err)
            if time.monotonic() > deadline:
                raise TimeoutError(f"producers: no {what} after {timeout:.0f} s")
            time.sleep(0.005)

    try:
        with warm_workers(peer, ctx, mark, log) as procs:
            env = peer_env(peer, mark)
            for k in range(PRODUCERS):
                with open(logs[k], "wb") as out:
                    prods.append(subprocess.Popen(
                        [sys.executable, PRODUCER, mod.__name__, str(k), str(per), where],
                        cwd=ADAPTERS, env=env, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True))
            ready = [os.path.join(where, f"ready-{k}") for k in range(PRODUCERS)]
            wait_for("start", lambda: all(map(os.path.exists, ready)),
                     time.monotonic() + timeout)
            open(os.path.join(where, "go"), "w").close()
            wait_for("end", lambda: all(p.poll() is not None for p in prods),
                     time.monotonic() + timeout)
            # every job must have run (each producer's warm-up job too, and ours)
            wait_marks(mark, 1 + PRODUCERS * (per + 1), procs, time.monotonic() + timeout, log)
        ran = read(mark)
        missing = [k * ID_SPAN + j for k in range(PRODUCERS) for j in range(per)
                   if k * ID_SPAN + j not in ran]
        if missing:
            raise RuntimeError(f"{len(missing)} producer jobs never ran, e.g. {missing[:3]}")
        took: list[float] = []
        began, ended = [], []
        for k in range(PRODUCERS):
            rec = array.array("d")
            with open(os.path.join(where, f"lat-{k}"), "rb") as f:
                rec.frombytes(f.read())
            began.append(rec[0])
            ended.append(rec[1])
            took.extend(rec[2:])
        ms = sorted(t * 1000.0 for t in took)
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return (statistics.median(ms), cuts[98], len(ms) / (max(ended) - min(began)), ms[-1])
    finally:
        for p in prods:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        peer.close()


WORKLOADS = [("enqueue", w_enqueue), ("bulk", w_bulk), ("drain", w_drain),
             ("latency", w_latency), ("producers", w_producers)]

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

# label, the workload it bounds, measurement(ceiling module, ctx, n, tag); the module is
# bench/peers/ceiling.py (shared with bench/check.py), imported in main() once on sys.path
CEILING = [
    ("raw insert, synchronous FULL", "enqueue",
     lambda c, ctx, n, tag: c.insert(ctx.db(f"raw-full-{tag}.db"), n, "FULL")),
    ("raw insert, synchronous NORMAL", "enqueue",
     lambda c, ctx, n, tag: c.insert(ctx.db(f"raw-normal-{tag}.db"), n, "NORMAL")),
    ("raw executemany, 1000 per tx (FULL)", "bulk",
     lambda c, ctx, n, tag: c.bulk(ctx.db(f"raw-bulk-{tag}.db"), n)),
    ("raw claim/complete, 1 per tx (NORMAL)", "drain",
     lambda c, ctx, n, tag: c.claim(ctx.db(f"raw-claim-1-{tag}.db"), n, 1)),
    ("raw claim/complete, 100 per tx (NORMAL)", "drain",
     lambda c, ctx, n, tag: c.claim(ctx.db(f"raw-claim-100-{tag}.db"), n, 100)),
]


# --- scaling: litejobs alone ----------------------------------------------------------------

FIRST = 10_000  # a backlog's rate is measured over its first FIRST jobs
BACKLOG_TARGET = 0.8  # bigger backlogs should keep this share of the smallest one's rate
MEMORY_TARGET = 60.0  # MiB of RSS (the measure), supervisor + 2 workers, idle
GROWTH_SLACK = 5.0  # MiB of PSS more after the drain that still counts as "no growth"


@dataclass
class Plan:
    """What the scaling section runs: full-size, or small for --quick."""
    workers: list[int]
    backlogs: list[int]

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls([1, 2, 4], [10_000, 30_000, 100_000])
        return cls([1, 2, 4, 8], [10_000, 100_000, 1_000_000])


def proc_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # field 2, the command name, may hold spaces and ')': the fields after it start after
        # its last ')' with the state, then the ppid
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory(root: int) -> tuple[float, float, int]:
    """RSS and PSS (MiB) summed over ``root`` and its descendants, and how many processes.
    PSS splits shared pages (the interpreter, forked-from-parent pages) among the processes
    sharing them, so unlike RSS its sum is what the group really costs."""
    rss = pss = 0
    pids = proc_tree(root)
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024, pss / 1024, len(pids)


def s_memory_idle(mod, ctx, tag):
    """Supervisor + 2 workers on an empty file, idle: a warm-up job has run, then 1 s."""
    peer = mod.Peer(ctx, tag)
    mark, log = ctx.files(tag)
    try:
        with warm_workers(peer, ctx, mark, log) as procs:
            time.sleep(1.0)
            return memory(procs[0].pid)  # the supervisor: `litejobs run` itself
    finally:
        peer.close()


def backlog_template(mod, ctx, size: int) -> str:
    """A litejobs file holding ``size`` queued no-op jobs (ids 0..size-1), filled with
    ``enqueue_many`` in chunks of 1000 and checkpointed, so copying that one file copies them
    all: each repetition starts from a copy instead of paying the fill of 1M jobs again."""
    import apsw
    peer = mod.Peer(ctx, f"backlog-{size}")
    try:
        for lo in range(0, size, CHUNK):
            peer.enqueue_bulk(list(range(lo, min(size, lo + CHUNK))))
    finally:
        peer.close()
    c = apsw.Connection(peer.path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return peer.path


def s_backlog(mod, ctx, template: str, size: int, tag: str, timeout: float,
              mem: dict[str, Cell] | None) -> float:
    """``litejobs run --workers 2`` started on a copy of ``template``: the rate from the first
    task start to the FIRST-th (mark file). Stops there, unless ``mem`` is given: then the
    memory of supervisor + workers goes into mem["busy"] at that point, the whole backlog runs,
    and 1 s after the last job its memory goes into mem["drained"] (or why it could not)."""
    peer = mod.Peer(ctx, tag)
    peer.close()
    path = ctx.db(os.path.basename(peer.path))  # drops the fresh file and its -wal/-shm
    shutil.copyfile(template, path)
    mark, log = ctx.files(tag)
    first = min(FIRST, size)
    try:
        with workers(peer, ctx, mark, log) as procs:
            wait_marks(mark, first, procs, time.monotonic() + timeout, log)
            if mem is not None:
                # "busy" once a tenth has run: by then the supervisor's page cache has filled
                # (to its cache_size), so what grows after that is what a leak would be
                wait_marks(mark, warm(size), procs, time.monotonic() + timeout, log)
                attempt(mem["busy"], partial(memory, procs[0].pid))
                attempt(mem["drained"], partial(drain_rest, mark, size, procs, timeout, log))
        starts = first_starts(mark, first)
        return (first - 1) / (starts[-1] - starts[0])
    finally:
        ctx.db(os.path.basename(path))  # ~0.5 GB after 1M jobs: not kept till the end


def warm(size: int) -> int:
    """Jobs of a ``size`` backlog after which the memory counts as "busy" (cache filled)."""
    return max(FIRST, size // 10)


def drain_rest(mark: str, size: int, procs, timeout: float, log: str):
    """Wait until all ``size`` jobs have run, then 1 s; the memory of supervisor + workers."""
    from common import count
    start, done = time.monotonic(), count(mark)
    try:
        # a deadline for at least 1,000 jobs/s: anything slower is a finding, not a wait
        wait_marks(mark, size, procs, start + max(timeout, size / 1000), log)
    except TimeoutError as e:
        took = time.monotonic() - start
        raise TimeoutError(f"draining all {size:,}: {e} after {took:.0f} s "
                           f"(≈{(count(mark) - done) / took:,.0f} jobs/s)") from None
    time.sleep(1.0)
    return memory(procs[0].pid)  # the supervisor: `litejobs run` itself


def first_starts(mark: str, first: int) -> list[float]:
    """The ``first`` earliest task starts in a mark file, sorted (no dict: 1M records)."""
    from common import REC
    with open(mark, "rb") as f:
        data = f.read()
    times = sorted(t for _, t in REC.iter_unpack(data[: len(data) // REC.size * REC.size]))
    return times[:first]


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
    if w == "producers":
        return f"{v[0]:.2f} / {v[1]:.2f} / {v[3]:.0f} ms, {fmt_rate(v[2])}/s"
    if w == "drain":
        return f"{fmt_rate(v[0])} ({fmt_rate(v[1])})"
    return fmt_rate(v)


def fmt_rate(v) -> str:
    if v is None:
        return "—"
    return f"{v / 1000:,.1f}k" if v >= 10_000 else f"{v:,.0f}"


def attempt(cell: Cell, fn) -> float:
    """One measurement into ``cell``: a sample, or the error (a later success clears it).
    Returns the seconds it took."""
    t = time.monotonic()
    try:
        cell.samples.append(fn())
        cell.error = ""
    except Exception as e:
        cell.error = f"{type(e).__name__}: {e}"[:400]
        if os.environ.get("PEERS_DEBUG"):
            traceback.print_exc()
    return time.monotonic() - t


def run_scaling(mod, ctx, plan: Plan, n: int, rep: int, timeout: float,
                scaling: dict[tuple[str, int | str], Cell], templates: dict[int, str]) -> None:
    """One repetition of the scaling section; the first one also drains the largest backlog to
    the end and measures memory after it."""
    def one(key, fn, shown) -> None:
        cell = scaling.setdefault(key, Cell())
        took = attempt(cell, fn)
        v = cell.value()
        print(f"  scaling {key[0]:<8} {key[1]!s:<9} {'—' if v is None else shown(v):>24}  "
              f"({took:.1f} s) {cell.error}", flush=True)

    def template(size: int) -> str:
        if size not in templates:
            templates[size] = backlog_template(mod, ctx, size)
        return templates[size]

    def backlog(size: int, mem: dict[str, Cell] | None) -> float:
        return s_backlog(mod, ctx, template(size), size, f"backlog-{size}-r{rep}", timeout,
                         mem)

    def mib(v) -> str:
        return f"RSS {v[0]:.1f} / PSS {v[1]:.1f} MiB"

    one(("memory", "idle"), partial(s_memory_idle, mod, ctx, f"mem-r{rep}"), mib)
    for k in plan.workers:
        one(("workers", k), partial(w_drain, mod, {"durability": "full", "workers": k}, ctx, n,
                                    f"workers-{k}-r{rep}", timeout), partial(show, "drain"))
    for size in plan.backlogs:
        to_end = rep == 0 and size == plan.backlogs[-1]
        mem = {when: scaling.setdefault(("memory", when), Cell())
               for when in ("busy", "drained")} if to_end else None
        one(("backlog", size), partial(backlog, size, mem), fmt_rate)
        for when, cell in (mem or {}).items():
            v = cell.value()
            print(f"  scaling memory   {when:<9} {'—' if v is None else mib(v):>24}  "
                  f"{cell.error}", flush=True)


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
    ap.add_argument("--no-scaling", action="store_true",
                    help="skip the litejobs scaling section (workers, backlog, memory)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--chart", default=os.path.join(HERE, "results.png"))
    opts = ap.parse_args()
    n = opts.jobs if (not opts.quick or "--jobs" in " ".join(sys.argv)) else 1000
    reps = opts.repeat or (1 if opts.quick else 3)
    timeout = opts.timeout or (60.0 if opts.quick else 300.0)
    only = [s.strip().lower() for s in opts.only.split(",") if s.strip()]
    systems = [s for s in SYSTEMS if not only or any(o in s[0].lower() for o in only)]
    plan = None if opts.no_scaling or not any(m == "p_litejobs" for _, m, _ in systems) \
        else Plan.make(opts.quick)
    import ceiling as ceiling_mod  # bench/peers/ceiling.py

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
    scaling: dict[tuple[str, int | str], Cell] = {}
    templates: dict[int, str] = {}
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
                    cell.samples.append(fn(ceiling_mod, ctx, n, f"r{rep}"))
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
                    took = attempt(cell, partial(wfn, modules[modname], kw, ctx, n, tag,
                                                 timeout))
                    shown = show(wname, cell.value())
                    print(f"  {label:<30} {wname:<9} {shown:>24}  ({took:.1f} s) {cell.error}",
                          flush=True)
            if plan is not None and "p_litejobs" in modules:
                run_scaling(modules["p_litejobs"], ctx, plan, n, rep, timeout, scaling,
                            templates)
    finally:
        services.stop()
    elapsed = time.monotonic() - t0
    write_report(opts, n, reps, systems, results, ceiling, versions, notes, broken, services,
                 elapsed, plan, scaling)
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
                 elapsed, plan, scaling) -> None:
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

    def best_peer(w, by=None):
        """The best peer's value and label: for latency the lowest p50; for producers the
        lowest p99 (by=1) or the highest aggregate rate (by=2); else the highest rate."""
        vals = [(val(p, w), p) for p in peers if val(p, w) is not None]
        if not vals:
            return None, None
        if w == "latency":
            return min(vals, key=lambda x: x[0][0])
        if w == "producers":
            pick = min if by == 1 else max
            return pick(vals, key=lambda x: x[0][by])
        return max(vals)

    ceil = {lab: c.value() for lab, c in ceiling.items()}
    lines = [
        "# litejobs and its peers",
        "",
        f"Written by `python bench/peers.py{' --quick' if opts.quick else ''}"
        f"{'' if opts.quick and n == 1000 else f' --jobs {n}'}"
        f"{f' --repeat {reps}' if opts.repeat else ''}"
        f"{' --no-scaling' if opts.no_scaling else ''}` — N = {n} no-op jobs, "
        f"median of {reps} repetition(s); the run took {elapsed / 60:.1f} min.",
        "",
        *machine_lines(services),
        "",
        "Peer versions: " + ", ".join(f"{m.removeprefix('p_')} {v}" for m, v in sorted(
            versions.items())) + ".",
        "",
        *target_lines(val, best_peer, ceil, plan, scaling, results),
        "## Results (jobs/s unless stated; higher is better, latency lower is better)",
        "",
        "| system | enqueue 1-by-1 /s | bulk /s | drain, 2 workers /s (first→last task) | "
        "pickup p50 / p95 / p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for lab, _, _ in systems:
        lines.append(f"| {lab} | {cell_text(lab, 'enqueue')} | {cell_text(lab, 'bulk')} | "
                     f"{cell_text(lab, 'drain')} | {cell_text(lab, 'latency')} |")
    per = max(100, n // 5)
    lines += ["", f"### Enqueue under contention: {PRODUCERS} producers while 2 workers drain",
              "", f"{PRODUCERS} processes each enqueue {per:,} jobs one by one, released "
              "together, into the store the system's workers are draining; the time of every "
              f"single enqueue call ({PRODUCERS * per:,} in all), the slowest one, and all "
              "calls / (last producer's end − first one's start). × best peer: that peer's "
              "p99 / this p99 (above 1: litejobs quicker).", "",
              "| system | enqueue p50 ms | enqueue p99 ms | slowest ms | aggregate enqueue /s "
              "| × best peer p99 |", "|---|---:|---:|---:|---:|---:|"]
    bp99, bp99_lab = best_peer("producers", 1)
    for lab, _, _ in systems:
        v = val(lab, "producers")
        if v is None:
            txt = cell_text(lab, "producers")
            lines.append(f"| {lab} | {txt} | {txt} | {txt} | {txt} | — |")
            continue
        ratio = (f"{bp99[1] / v[1]:.2f}" if bp99 and lab in lj and v[1] > 0 else
                 "best peer" if lab == bp99_lab else "—")
        lines.append(f"| {lab} | {v[0]:.2f} | {v[1]:.2f} | {v[3]:.0f} | {fmt_rate(v[2])} "
                     f"| {ratio} |")
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
              "Ratio to the fastest peer in this run (for latency: peer p50 / litejobs p50, and "
              "for 4 producers p99: peer p99 / litejobs p99, so above 1 means litejobs is "
              "quicker) and to the SQLite ceiling.", "",
              "| litejobs | workload | value | fastest peer | × fastest peer | SQLite ceiling "
              "| × ceiling |", "|---|---|---:|---|---:|---|---:|"]
    for lab in lj:
        for w in ("enqueue", "bulk", "drain", "latency", "producers"):
            v = val(lab, w)
            bv, bp = best_peer(w, 1 if w == "producers" else None)
            if v is not None and w == "producers":
                lines += producer_ratios(lab, v, best_peer)
                continue
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

    if plan is not None:
        lines += scaling_lines(plan, scaling, n)
    errs = [(lab, w, c.error) for (lab, w), c in results.items() if c.error]
    errs += [(f"litejobs scaling, {kind}", str(what), c.error)
             for (kind, what), c in scaling.items() if c.error]
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
              "just before the enqueue call. Producers: workers started and warmed up with one "
              f"job; {PRODUCERS} processes (`bench/peers/producer.py`, the same environment "
              "as the workers) each connect and enqueue one untimed job, wait at a start "
              "gate, then enqueue their share one call at a time, timing each call with "
              "`perf_counter`; the run counts only once every job has run.", ""]
    for mod, note in notes.items():
        labs = ", ".join(lab for lab, m, _ in systems if m == mod)
        lines.append(f"- {labs}: {note}")
    lines.append("")
    with open(opts.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[lines.index("## Results (jobs/s unless stated; higher is better, "
                                      "latency lower is better)"):]))


#: Why a target is missed, where it is (what the profile shows), shown beside a missed one.
TARGET_NOTES = {
    "enqueue-full": "Timed apart (2,000 commits each, same machine): a raw autocommit insert "
                    "156 µs; with BEGIN IMMEDIATE + COMMIT (how litejobs makes every write) "
                    "174 µs; raw SQL into litejobs' table (25 columns, partial indexes) with "
                    "BEGIN IMMEDIATE 200 µs; litejobs' enqueue 194 µs. Python is lost in the "
                    "fsync; the gap is the explicit transaction and the bigger row, with the "
                    "same syscalls per commit (1 fdatasync, 4 pwrite64, 6 fcntl).",
    "enqueue-fast": "SQLite's own insert costs ~30 µs per commit on our schema (raw table "
                    "~20 µs); Python adds ~10 µs.",
    "bulk": "Durability full pays one fsync per chunk of 1000 and our rows are ~3× the raw "
            "table's bytes (the WAL frames to sync grow with them); in fast mode the chunk "
            "is split by SQLite's json_each and Python costs ~1 µs per job.",
    "drain": "Measured from starting `litejobs run`: ~0.2 s of it is start-up (the supervisor "
             "and two fresh worker interpreters importing the app, and quick_check of the "
             "file) before the first job. The supervisor then costs ~35 µs CPU per job "
             "(claims and outcomes, 32 jobs per statement; JSON lines over pipes), the workers "
             "~10 µs each, on 2 shared cores.",
    "pickup": "Timed inside the supervisor (medians of 200, durability fast): enqueue to "
              "the idle supervisor awake ~0.2 ms (the producer's commit, the datagram, waking "
              "an idle process on the VM); then the loop ~50 µs, BEGIN IMMEDIATE ~20 µs, the "
              "claim's reads ~100 µs (WAL mode drops a connection's page cache whenever "
              "another one committed, so each page is read again), the claim 70–240 µs, "
              "COMMIT ~30 µs; the worker starts as the pipe write returns. The same code "
              "gives 0.59–0.99 ms p50 from run to run; with durability full the producer's "
              "fsync is in it too.",
    "memory": "Three Python interpreters: the supervisor ~26 MiB RSS (the CLI, SQLite, the "
              "app), each worker ~14.5 MiB (the app and litejobs without SQLite: workers "
              "never open the file); RSS counts the shared libraries three times, PSS once.",
    "growth": "Growth after the page cache is warm would be a leak: look at the supervisor's "
              "per-job state (outcomes, assignments) first.",
    "backlog": "The claim reads the head of the queue by index; a missed target points at a "
               "full scan somewhere on the supervisor's path.",
}


def target_lines(val, best_peer, ceil, plan, scaling, results) -> list[str]:
    """The issue's targets, each judged on this run's figures."""
    rows: list[tuple[str, str, bool | None, str]] = []  # target, measured, met, note key

    def rate_vs_peer(lab, w, factor, note):
        v, (bv, bp) = val(lab, w), best_peer(w)
        if v is None or bv is None:
            rows.append((f"{lab} {w} ≥ {factor}× fastest peer", "not measured", None, note))
            return
        rows.append((f"{lab} {w} ≥ {factor}× fastest peer ({bp}, {fmt_rate(bv)}/s)",
                     f"{fmt_rate(v)}/s = {v / bv:.2f}×", v >= factor * bv, note))

    def rate_vs_ceiling(lab, w, ceiling_label, factor, note):
        v, cv = val(lab, w), ceil.get(ceiling_label)
        if v is None or not cv:
            rows.append((f"{lab} {w} ≥ {factor}× {ceiling_label}", "not measured", None, note))
            return
        rows.append((f"{lab} {w} ≥ {factor}× {ceiling_label} ({fmt_rate(cv)}/s)",
                     f"{fmt_rate(v)}/s = {v / cv:.2f}×", v >= factor * cv, note))

    rate_vs_peer("litejobs (fast)", "enqueue", 2, "enqueue-fast")
    rate_vs_ceiling("litejobs (fast)", "enqueue", "raw insert, synchronous NORMAL", 0.5,
                    "enqueue-fast")
    rate_vs_ceiling("litejobs (full)", "enqueue", "raw insert, synchronous FULL", 0.9,
                    "enqueue-full")
    for lab in ("litejobs (fast)", "litejobs (full)"):
        rate_vs_peer(lab, "bulk", 3, "bulk")
        v = val(lab, "bulk")
        if v is not None:
            rows.append((f"{lab} bulk ≥ 250k jobs/s", f"{fmt_rate(v)}/s", v >= 250_000, "bulk"))
    rate_vs_peer("litejobs (fast)", "drain", 4, "drain")
    rate_vs_peer("litejobs (full)", "drain", 2, "drain")
    for lab in ("litejobs (fast)", "litejobs (full)"):
        v, (bv, bp) = val(lab, "latency"), best_peer("latency")
        if v is not None and bv is not None:
            rows.append((f"{lab} pickup p50 ≤ fastest peer's ({bp}, {bv[0]:.2f} ms)",
                         f"{v[0]:.2f} ms", v[0] <= bv[0], "pickup"))
        if v is not None:
            rows.append((f"{lab} pickup p99 ≤ 2 ms", f"{v[2]:.2f} ms", v[2] <= 2.0, "pickup"))
    if plan is not None:
        def value(key):
            c = scaling.get(key)
            return c.value() if c else None
        idle, busy = value(("memory", "idle")), value(("memory", "busy"))
        drained = value(("memory", "drained"))
        if idle is not None:
            rows.append((f"supervisor + 2 idle workers ≤ {MEMORY_TARGET:.0f} MB RSS",
                         f"RSS {idle[0]:.1f} MiB (PSS {idle[1]:.1f})", idle[0] <= MEMORY_TARGET,
                         "memory"))
        if busy is not None and drained is not None:
            rows.append((f"no growth over {plan.backlogs[-1]:,} jobs (PSS, from "
                         f"{warm(plan.backlogs[-1]):,} jobs in to the end, "
                         f"±{GROWTH_SLACK:.0f} MiB)",
                         f"{drained[1] - busy[1]:+.1f} MiB (from start-up: "
                         f"{drained[1] - (idle or busy)[1]:+.1f}, the page cache filling)",
                         drained[1] - busy[1] <= GROWTH_SLACK, "growth"))
        small = value(("backlog", plan.backlogs[0]))
        for size in plan.backlogs[1:]:
            v = value(("backlog", size))
            if v is not None and small:
                rows.append((f"backlog {size:,} ≥ {BACKLOG_TARGET}× the {plan.backlogs[0]:,} rate",
                             f"{fmt_rate(v)}/s = {v / small:.2f}×", v >= BACKLOG_TARGET * small,
                             "backlog"))
    lines = ["## Targets (issue 6), judged on this run", "",
             "| target | measured | verdict | why, where missed |", "|---|---|---|---|"]
    for target, measured, met, note in rows:
        verdict = "—" if met is None else "met" if met else "**missed**"
        lines.append(f"| {target} | {measured} | {verdict} | "
                     f"{'' if met else TARGET_NOTES.get(note, '')} |")
    met_n = sum(1 for r in rows if r[2])
    lines += ["", f"{met_n} of {len(rows)} targets met. The profiles behind the notes: "
              "py-spy on the supervisor during a 30k-job drain and per-statement timings "
              "(see the closing note of issue 6).", ""]
    return lines


def producer_ratios(lab, v, best_peer) -> list[str]:
    """The two rows of the ratio table for the producers workload: p99 and aggregate rate."""
    rows = []
    for by, what in ((1, "4 producers p99"), (2, "4 producers rate")):
        bv, bp = best_peer("producers", by)
        if by == 1:
            shown, peer_txt = f"{v[1]:.2f} ms p99", f"{bp} ({bv[1]:.2f} ms)" if bp else "—"
            ratio = f"{bv[1] / v[1]:.2f}" if bv and v[1] > 0 else "—"
        else:
            shown, peer_txt = f"{fmt_rate(v[2])}/s", f"{bp} ({fmt_rate(bv[2])}/s)" if bp else "—"
            ratio = f"{v[2] / bv[2]:.2f}" if bv else "—"
        rows.append(f"| {lab} | {what} | {shown} | {peer_txt} | {ratio} | — | — |")
    return rows


def scaling_lines(plan: Plan, scaling, n: int) -> list[str]:
    """The scaling section of RESULTS.md: workers, backlog, memory."""
    def value(key):
        c = scaling.get(key)
        return c.value() if c else None

    def missing(key) -> str:
        c = scaling.get(key)
        return "fails (below)" if c and c.error else "—"

    big = plan.backlogs[-1]
    lines = ["", "## Scaling: litejobs alone (durability \"full\")", "",
             f"### Workers: N = {n:,} queued jobs, `litejobs run --workers K`", "",
             "Same two figures as the drain above: from starting `litejobs run` until the N-th "
             "job has run, and (in brackets there) first → last task start.", "",
             "| workers | drain /s, from start | first→last task /s | × 1 worker (first→last) |",
             "|---:|---:|---:|---:|"]
    one = value(("workers", plan.workers[0]))
    for k in plan.workers:
        v = value(("workers", k))
        if v is None:
            lines.append(f"| {k} | {missing(('workers', k))} | — | — |")
            continue
        ratio = f"{v[1] / one[1]:.2f}" if one and one[1] > 0 else "—"
        lines.append(f"| {k} | {fmt_rate(v[0])} | {fmt_rate(v[1])} | {ratio} |")

    lines += ["", f"### Backlog: the first {FIRST:,} jobs of a big queue, 2 workers", "",
              "`litejobs run --workers 2` started on a file already holding the backlog "
              "(filled with `enqueue_many` in chunks of 1000, not timed); the rate from the "
              f"first task start to the {FIRST:,}th. Target: every backlog keeps ≥ "
              f"{BACKLOG_TARGET}× the {plan.backlogs[0]:,} figure.", "",
              f"| backlog (queued jobs) | jobs/s over the first {FIRST:,} | "
              f"× {plan.backlogs[0]:,} backlog | target ≥ {BACKLOG_TARGET}× |",
              "|---:|---:|---:|---|"]
    small = value(("backlog", plan.backlogs[0]))
    for size in plan.backlogs:
        v = value(("backlog", size))
        if v is None:
            lines.append(f"| {size:,} | {missing(('backlog', size))} | — | — |")
            continue
        r = v / small if small else None
        verdict = ("—" if r is None or size == plan.backlogs[0] else
                   "ok" if r >= BACKLOG_TARGET else "**below**")
        lines.append(f"| {size:,} | {fmt_rate(v)} | {'—' if r is None else f'{r:.2f}'} | "
                     f"{verdict} |")

    idle, busy = value(("memory", "idle")), value(("memory", "busy"))
    drained = value(("memory", "drained"))
    lines += ["", "### Memory: supervisor + 2 workers", "",
              "RSS and PSS summed over `litejobs run` and its child processes (from "
              "`/proc/PID/smaps_rollup`; PSS shares pages the processes have in common among "
              "them, so its sum is what the group really costs, while RSS counts them in each). "
              "After start-up: an empty file, one warm-up job, then 1 s. Busy and after the "
              f"drain: the supervisor that drained the whole {big:,} backlog above (first "
              f"repetition), once a tenth of it ({warm(big):,} jobs) had started, and 1 s "
              "after its last job. Some growth from start-up is SQLite's page cache filling on "
              "a big file (bounded by each connection's cache_size); growth from busy to "
              f"drained is what a leak would look like. Target ≤ {MEMORY_TARGET:.0f} MiB and no "
              "growth "
              f"(PSS within {GROWTH_SLACK:.0f} MiB).", "",
              "| when | processes | RSS MiB | PSS MiB | target (RSS) |",
              "|---|---:|---:|---:|---|"]

    def row(label, key, v):
        if v is None:
            return f"| {label} | — | {missing(key)} | — | — |"
        ok = "ok" if v[0] <= MEMORY_TARGET else "**above**"  # the target is RSS
        return f"| {label} | {v[2]:.0f} | {v[0]:.1f} | {v[1]:.1f} | ≤ {MEMORY_TARGET:.0f}: {ok} |"

    lines.append(row("idle after start-up", ("memory", "idle"), idle))
    lines.append(row(f"busy, after {warm(big):,} jobs of {big:,}", ("memory", "busy"), busy))
    lines.append(row(f"idle after draining {big:,} jobs", ("memory", "drained"), drained))
    for label, a in (("start-up", idle), ("busy", busy)):
        if a and drained:
            grew = drained[1] - a[1]
            ok = "ok" if grew <= GROWTH_SLACK else "**grew**"
            lines.append(f"| drained − {label} | | {drained[0] - a[0]:+.1f} | {grew:+.1f} | "
                         f"no growth: {ok} |")
    return lines


def chart(path, systems, results, n) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # workload: (panel title, which number of a tuple value to plot)
    panels = {
        "enqueue": ("enqueue 1-by-1 (jobs/s, log)", 0),
        "bulk": ("bulk enqueue (jobs/s, log; blank: no bulk API)", 0),
        "drain": ("drain N, 2 workers, start-up incl. (jobs/s, log)", 0),
        "latency": ("pickup p50 (ms, log; lower is better)", 0),
        "producers": (f"enqueue p99, {PRODUCERS} producers + draining\n"
                      "(ms, log; lower is better)", 1),
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 6))
    for ax, (w, (title, k)) in zip(axes, panels.items(), strict=True):
        labs, vals = [], []
        for lab, _, _ in systems:
            c = results.get((lab, w))
            v = c.value() if c else None
            labs.append(lab)
            vals.append(float("nan") if v is None else v[k] if isinstance(v, tuple) else v)
        colors = ["tab:red" if lab.startswith("litejobs") else "tab:gray" for lab in labs]
        ax.barh(labs, vals, color=colors)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"litejobs (red) and its peers: N = {n}, {platform.node() or 'this machine'}, "
                 f"{os.cpu_count()} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
