"""Input faults: bad arguments, hostile names and rows, bad config, and wall-clock steps.

Every refusal must be typed (TypeError, ValueError, ConfigError, StorageError) and name what is
wrong; names that look like SQL or LIKE patterns must round-trip verbatim through enqueue, the
CLI and a real worker; a row naming ``os.system`` or holding a pickle must never run code; and
a wall clock stepped back or forward an hour must neither fire a cron instant twice nor rescue
healthy jobs en masse (checked on a real supervisor under libfaketime when it is installed).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs import maintenance
from litejobs.errors import ConfigError
from litejobs.serialization import PayloadTooLarge
from litejobs.store import QueueLimits
from litejobs.ticker import Ticker, build_entries
from tests.apps import basic
from tests.conftest import REPO, JobLog, SupervisorProcess, clean_env, wait_for
from tests.faults.helpers import integrity, litejobs_cli, one_line_refusal, sql

pytestmark = pytest.mark.timeout(120)

APP_SPEC = "tests.apps.basic:app"
PACKAGE = REPO / "litejobs"
TERMINAL = {"succeeded", "failed", "cancelled"}


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def total_jobs(db: Path) -> int:
    return int(sql(db, "SELECT count(*) FROM jobs")[0][0])


# --- 5. bad input --------------------------------------------------------------------------------

#: Names that look like SQL, LIKE patterns, shell, paths; unicode; the longest allowed.
HOSTILE = [
    "x'; DROP TABLE jobs; --",
    "%_\\",
    "Robert'); DELETE FROM jobs WHERE ('1'='1",
    '"quoted" `tick` $(touch pwned) ${HOME}',
    "ジョブ 🚀 émoji",
    "../../etc/passwd",
    "NULL",
    " spaced ",
    "q" * 199 + "%",
]


def test_bad_input_refused_typed_and_hostile_names_round_trip(start_supervisor, app, db_path,
                                                             tmp_path, report) -> None:
    """Bad input: typed, clear refusals; SQL-like names round-trip verbatim through a worker"""
    add = app.tasks["basic.add"]
    app.enqueue("basic.add", args=[0, 0])  # the file exists from here on
    before = total_jobs(db_path)
    refused: list[str] = []

    def refuse(kind: type[BaseException], call: Any, *fragments: str) -> None:
        with pytest.raises(kind) as info:
            call()
        text = str(info.value)
        for fragment in fragments:
            assert fragment in text, (fragment, text)
        assert "nothing was enqueued" in text or kind is ValueError, text
        refused.append(f"{type(info.value).__name__}: {text[:60]}")

    refuse(TypeError, lambda: add.enqueue(float("nan"), 1), "basic.add", "'a'", "JSON")
    refuse(TypeError, lambda: add.enqueue(1, b=float("inf")), "basic.add", "'b'")
    refuse(TypeError, lambda: app.enqueue("basic.add", args=[{"x": [float("nan")]}, 1]),
           "basic.add", "'a'")
    refuse(TypeError, lambda: add.enqueue(nested(201), 1), "'a'", "200 levels")
    refuse(TypeError, lambda: add.enqueue(nested(100_000), 1), "'a'", "200 levels")
    refuse(TypeError, lambda: add.enqueue({1, 2}, 1), "'a'", "set")
    refuse(TypeError, lambda: add.enqueue(object(), 1), "'a'")
    refuse(TypeError, lambda: add.enqueue("\udcff", ""), "'a'")  # a lone surrogate
    refuse(PayloadTooLarge, lambda: add.enqueue("x" * (1 << 20), ""), "basic.add",
           "bytes", "cap")
    refuse(ValueError, lambda: app.enqueue("a\x00b"), "control characters")
    refuse(ValueError, lambda: app.enqueue("basic.add", queue="q\n"), "control characters")
    refuse(ValueError, lambda: app.enqueue("basic.add", queue="q" * 201), "200 characters")
    refuse(ValueError, lambda: app.enqueue("t" * 201), "200 characters")
    refuse(ValueError, lambda: app.enqueue("basic.add", key=""), "key")
    refuse(ValueError, lambda: app.enqueue("basic.add", priority=101), "-100 to 100")
    refuse(ValueError, lambda: app.enqueue("basic.add", delay=float("nan")), "delay")
    assert issubclass(PayloadTooLarge, ValueError)
    assert total_jobs(db_path) == before  # nothing was written by any refusal

    for args_json, fragment in (("[NaN, 1]", "JSON"), ("[1, 2", "JSON"),
                                ("[" * 5000 + "]" * 5000, "nested"), ('{"a": 1}', "array")):
        proc = litejobs_cli("enqueue", "basic.add", "--app", APP_SPEC, "--args", args_json,
                            db=db_path, cwd=tmp_path)
        one_line_refusal(proc, fragment)
        refused.append(f"cli --args {args_json[:12]}")
    proc = litejobs_cli("enqueue", "x'; DROP TABLE jobs; --", "--app", APP_SPEC, db=db_path,
                        cwd=tmp_path)
    one_line_refusal(proc, "unknown task", "basic.add")
    refused.append("cli unknown task")
    assert total_jobs(db_path) == before

    # Hostile names round-trip: as unknown tasks (failed, naming the task and the registered
    # ones), as queues and keys of a real task (run, seeing its queue verbatim).
    biggest = nested(200)  # the deepest value allowed, through a real worker and back
    large = "y" * 900_000  # under the 1 MiB cap: crosses the worker pipes in both directions
    expected: dict[int, tuple[str, str, str | None, str]] = {}  # id: task, queue, key, state
    for name in HOSTILE:
        job = app.enqueue(name, args=[name], queue=name, key=name)
        expected[job.id] = (name, name, name, "failed")
        job = app.enqueue("basic.context", queue=name, key=name)
        expected[job.id] = ("basic.context", name, name, "succeeded")
        again = app.enqueue("basic.context", queue=name, key=name)
        assert again.id == job.id  # the key matched itself exactly
    for pattern, near in (("%", "anything"), ("_", "x"), ("\\", "\\\\")):
        a = app.enqueue("basic.context", key=pattern)
        b = app.enqueue("basic.context", key=near)
        assert a.id != b.id  # a key is never a LIKE pattern
        expected[a.id] = ("basic.context", "default", pattern, "succeeded")
        expected[b.id] = ("basic.context", "default", near, "succeeded")
    deep = add.enqueue(biggest, [])
    big = add.enqueue(large, "z")
    expected[deep.id] = ("basic.add", "default", None, "succeeded")
    expected[big.id] = ("basic.add", "default", None, "succeeded")

    listed = litejobs_cli("jobs", "--database", db_path, "--json", "--limit", "1000",
                          db=db_path, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {j["id"]: j for j in json.loads(listed.stdout)}
    for job_id, (task, queue, key, _) in expected.items():
        assert (rows[job_id]["task"], rows[job_id]["queue"], rows[job_id]["key"]) == (
            task, queue, key), rows[job_id]
    for name in HOSTILE:
        by_task = litejobs_cli("jobs", "--database", db_path, "--json", "--task", name,
                               db=db_path, cwd=tmp_path)
        assert [j["task"] for j in json.loads(by_task.stdout)] == [name], by_task.stderr
        by_queue = litejobs_cli("jobs", "--database", db_path, "--json", "--queue", name,
                                db=db_path, cwd=tmp_path)
        assert sorted(j["task"] for j in json.loads(by_queue.stdout)) == sorted(
            [name, "basic.context"]), by_queue.stderr

    sup = start_supervisor(workers=2)
    jobs = {job_id: app.get_job(job_id) for job_id in expected}
    wait_for(lambda: all(j.refresh().state.value in TERMINAL for j in jobs.values()), 60,
             "every hostile-named job to end", details=sup.output)
    lost = []
    duplicates = 0
    for job_id, (task, queue, key, state) in expected.items():
        job = jobs[job_id]
        if job.state.value != state:
            lost.append((job_id, task, job.state.value, job.error))
            continue
        duplicates += job.attempt - 1
        if state == "failed":
            assert f"unknown task {task!r}" in (job.error or ""), job.error
            assert "registered: " in (job.error or "") and "basic.add" in (job.error or "")
        elif task == "basic.context":
            seen = job.result(timeout=1)
            assert (seen["task"], seen["queue"]) == (task, queue), seen
    assert lost == [] and duplicates == 0, lost
    assert deep.result(timeout=1) == biggest
    assert big.result(timeout=1) == large + "z"
    assert sup.running()
    tables = {r[0] for r in sql(db_path, "SELECT name FROM sqlite_schema WHERE type='table'")}
    assert {"jobs", "attempts", "queues", "cron_entries", "cron_fires"} <= tables
    assert integrity(db_path) == "ok"
    report(enqueued=len(expected), succeeded=sum(s == "succeeded" for *_, s in
                                                expected.values()),
           lost=len(lost), duplicates=duplicates, producer_errors=0,
           note=(f"{len(refused)} bad inputs refused with TypeError/ValueError (NaN, inf, "
                 "nesting > 200 and 100,000 deep, sets, objects, lone surrogates, > 1 MiB, "
                 "control characters, over-long names, bad CLI JSON) and nothing written; "
                 f"{len(HOSTILE)} SQL/LIKE/shell/unicode names round-tripped verbatim as task, "
                 "queue and key through enqueue, `litejobs jobs --json` (and its filters) and "
                 "a worker; the unknown-task jobs failed naming the task and the registered "
                 "ones (expected, not lost); 200-deep and 900 KB payloads ran"),
           refused=len(refused))


def test_large_payloads_never_stall_the_supervisor(start_supervisor, app, report) -> None:
    """Large payloads to a quick worker: the supervisor never blocks on a full pipe"""
    add = app.tasks["basic.add"]
    sup = start_supervisor(workers=1)
    # Quick jobs first: the supervisor then sends this worker jobs ahead (prefetch).
    warm = app.enqueue_many([add.prepare(i, i) for i in range(60)])
    wait_for(lambda: all(j.refresh().state is litejobs.State.SUCCEEDED for j in warm), 30,
             "the warm-up jobs", details=sup.output)
    pad = 300_000
    big = app.enqueue_many([add.prepare(f"{i}-", "x" * pad) for i in range(40)])
    # Regression: the supervisor wrote a job to a worker's pipe with a blocking write while
    # that worker blocked writing its large result back: both waited for ever.
    wait_for(lambda: all(j.refresh().state.value in TERMINAL for j in big), 30,
             "40 jobs of 300 KB to finish (a pipe deadlock stalls them)",
             details=lambda: f"{app.stats()}\n{sup.output()[-3000:]}")
    lost = [j.id for j in big if j.state is not litejobs.State.SUCCEEDED
            or j.result(timeout=1) != f"{j.args[0]}" + "x" * pad]
    assert lost == [] and sup.running()
    report(enqueued=len(warm) + len(big), succeeded=len(warm) + len(big) - len(lost),
           lost=len(lost), duplicates=sum(j.attempt - 1 for j in big), producer_errors=0,
           note=("one quick worker (so jobs are sent ahead), then 40 jobs of 300 KB "
                 "arguments and results in one enqueue_many: before the fix the supervisor "
                 "and the worker deadlocked on their pipes within seconds"))


BAD_CONFIGS = {
    "invalid TOML": ('app = "tests.apps.basic:app"\nworkers = \n', ":2:", "TOML"),
    "bad value": ('app = "tests.apps.basic:app"\n\nlease = "soon"\n', ":3:", "lease"),
    "unknown key": ('app = "tests.apps.basic:app"\nwokers = 2\n', ":2:", "wokers"),
    "bad schedule": ('app = "tests.apps.basic:app"\n[cron.nightly]\nschedule = "61 * * * *"\n'
                     'task = "basic.add"\n', ":3:", "cron.nightly.schedule"),
    "bad zone": ('app = "tests.apps.basic:app"\n[cron.nightly]\nschedule = "0 3 * * *"\n'
                 'task = "basic.add"\ntimezone = "Mars/Olympus"\n', ":5:",
                 "cron.nightly.timezone"),
    "bad misfire": ('app = "tests.apps.basic:app"\n[cron.nightly]\nschedule = "0 3 * * *"\n'
                    'task = "basic.add"\nmisfire = "sometimes"\n', ":5:",
                    "cron.nightly.misfire"),
    "unknown cron task": ('app = "tests.apps.basic:app"\n[cron.nightly]\n'
                          'schedule = "0 3 * * *"\ntask = "basic.nope"\n', "", "basic.nope"),
}


def test_invalid_config_refused_naming_file_line_and_key(tmp_path, db_path, report) -> None:
    """Invalid TOML and bad cron config: refused at start naming the file, line and key"""
    refusals = 0
    for label, (text, line, key) in BAD_CONFIGS.items():
        cfg = tmp_path / f"{label.replace(' ', '-')}.toml"
        cfg.write_text(text)
        for command in ("check", "run"):
            proc = litejobs_cli(command, "--config", cfg, db=db_path, cwd=tmp_path, timeout=30)
            message = one_line_refusal(proc, str(cfg), key)
            if line:
                assert f"{cfg}{line}" in message, (label, message)
            refusals += 1
        if label != "unknown cron task":  # that one is checked against the app's tasks
            with pytest.raises(ConfigError, match=key):
                litejobs.App.from_config(cfg)
            refusals += 1
    assert not db_path.exists()  # no refusal created the database
    report(note=f"{len(BAD_CONFIGS)} bad configs ({', '.join(BAD_CONFIGS)}), each refused by "
                "`litejobs check` and `litejobs run` in one line naming file:line and key "
                "(the unknown cron task names the entry and the task), and by "
                "App.from_config with ConfigError; no database was created",
           refusals=refusals)


# --- 6. security ---------------------------------------------------------------------------------


def _raw_insert(db: Path, task: str, args: str, kwargs: str = "{}") -> int:
    """A row written behind litejobs' back, as a hostile process with write access could."""
    now = time.time()
    rows = sql(db, "INSERT INTO jobs (task, queue, state, priority, args, kwargs, run_at, "
                   "scheduled_at, created_at, max_attempts) "
                   "VALUES (?, 'default', 'queued', 0, ?, ?, ?, ?, ?, 1) RETURNING id",
               (task, args, kwargs, now, now, now))
    return int(rows[0][0])


def test_hostile_rows_never_run_code_and_files_are_private(start_supervisor, app, db_path,
                                                           tmp_path, report) -> None:
    """Security: rows naming os.system or holding pickles never run code; files are 0600"""
    markers = [tmp_path / f"pwned-{n}" for n in range(7)]
    pickle0 = f"cos\nsystem\n(S'touch {markers[2]}'\ntR."  # protocol 0: runs os.system
    b64 = base64.b64encode(pickle0.encode()).decode()
    old = os.umask(0)  # the most permissive umask: litejobs must still make its files 0600
    try:
        sup = start_supervisor(workers=2)
        normal = app.enqueue("basic.add", args=[1, 2])
        normal.result(timeout=30)
    finally:
        os.umask(old)
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    bells = Path(f"{db_path}-bells")
    if bells.exists():
        assert stat.S_IMODE(bells.stat().st_mode) & 0o077 == 0, oct(bells.stat().st_mode)

    hostile = {
        "os.system": _raw_insert(db_path, "os.system", json.dumps([f"touch {markers[0]}"])),
        "subprocess.call": _raw_insert(db_path, "subprocess.call",
                                       json.dumps([["touch", str(markers[1])]])),
        "pickle.loads": _raw_insert(db_path, "pickle.loads", json.dumps([b64])),
        "builtins.eval": _raw_insert(
            db_path, "builtins.eval", json.dumps([f"__import__('os').system('touch "
                                                  f"{markers[3]}')"])),
        "pickle as text": _raw_insert(db_path, "basic.add", json.dumps([pickle0, b64])),
        "pickle as kwargs": _raw_insert(db_path, "basic.add", "[]",
                                        json.dumps({"a": pickle0, "b": "", "__reduce__": b64})),
        "raw pickle args": _raw_insert(db_path, "basic.add",
                                       f"cos\nsystem\n(S'touch {markers[4]}'\ntR."),
    }
    app.ring()
    jobs = {name: app.get_job(i) for name, i in hostile.items()}
    wait_for(lambda: all(j.refresh().state.value in TERMINAL for j in jobs.values()), 60,
             "every hostile row to end", details=lambda: sup.output()[-5000:])
    for name in ("os.system", "subprocess.call", "pickle.loads", "builtins.eval"):
        job = jobs[name]
        assert job.state is litejobs.State.FAILED, (name, job.state)
        assert f"unknown task {name!r}" in (job.error or ""), job.error
    text = jobs["pickle as text"]
    assert text.state is litejobs.State.SUCCEEDED and text.result(timeout=1) == pickle0 + b64
    kwargs_job = jobs["pickle as kwargs"]
    assert kwargs_job.state is litejobs.State.FAILED  # an unexpected keyword: a TypeError
    assert "unexpected keyword" in (kwargs_job.error or ""), kwargs_job.error
    raw = jobs["raw pickle args"]
    assert raw.state is litejobs.State.FAILED, raw.state
    # Failed as the job's own problem, at once: not by killing workers up to crash_limit.
    assert "not valid JSON" in (raw.error or ""), raw.error
    assert [a.outcome for a in raw.attempts()] == ["failed"], raw.attempts()
    assert not [m for m in markers if m.exists()], "a hostile row ran code"
    assert sup.running()
    assert app.enqueue("basic.add", args=[2, 3]).result(timeout=30) == 5  # pool goes on
    assert integrity(db_path) == "ok"
    report(enqueued=len(hostile) + 2, succeeded=3, lost=0, duplicates=0, producer_errors=0,
           note=("rows inserted behind litejobs' back naming os.system, subprocess.call, "
                 "pickle.loads, builtins.eval, or holding protocol-0 pickles (as text, base64, "
                 "kwargs, and as raw non-JSON args): none ran code (no marker file), the "
                 "unknown names failed as unknown tasks, the pickles stayed inert strings; "
                 f"raw non-JSON args: {raw.error!r:.90}; db, -wal, -shm created 0600 under "
                 "umask 0; the package imports no pickle/marshal/shelve (AST scan)"))


FORBIDDEN = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle",
             "jsonpickle"}


def test_no_module_imports_pickle_marshal_or_shelve() -> None:
    """No litejobs module imports pickle, marshal or shelve (nor loads them dynamically)."""
    found: list[str] = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if called in ("__import__", "import_module") and node.args and isinstance(
                        node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    names = [node.args[0].value]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert found == []


# --- 7. clock steps --------------------------------------------------------------------------


def cron_app(db: Path) -> litejobs.App:
    app = basic.make_app(db)
    for misfire in ("latest", "all", "skip"):
        app.add_cron_table(f"every-minute-{misfire}",
                           {"schedule": "* * * * *", "task": "basic.add", "args": [1, 2],
                            "misfire": misfire, "overlap": "allow"}, "test")
    return app


def test_cron_under_clock_steps_fires_each_instant_once(db_path, report) -> None:
    """Clock steps, cron: back and forward an hour, no instant fires twice; misfire obeyed"""
    app = cron_app(db_path)
    ticker = Ticker(app, app.store, build_entries(app))
    start = (int(time.time()) // 60) * 60 - 6 * 3600 + 7.0  # a past day, 7 s into a minute
    fired: list[tuple[float, int]] = []

    def run(first: float, minutes: int) -> float:
        now = first
        for _ in range(minutes * 4):
            fired.append((now, ticker.run_once(now).fired))
            now += 15.0
        return now

    now = run(start, 10)  # 10 minutes of normal ticking
    high = now - 15.0
    back = len(fired)
    now = run(now - 3600.0, 62)  # stepped back an hour, then through it and 2 min beyond
    repeat = [(t, n) for t, n in fired[back:] if t <= high]
    assert repeat and sum(n for _, n in repeat) == 0, "an instant fired again"
    assert sum(n for t, n in fired[back:] if t > high) > 0, "cron never resumed"
    jump = len(fired)
    run(now + 3600.0, 3)  # stepped forward an hour

    fires = sql(db_path, "SELECT entry, instant, outcome, job_id, fired_at FROM cron_fires")
    jobs = sql(db_path, "SELECT id, scheduled_at FROM jobs")
    job_ids = [f[3] for f in fires if f[2] == "fired"]
    assert len(job_ids) == len(set(job_ids)) == len(jobs)
    per_instant = Counter((f[0], f[1]) for f in fires)
    duplicates = sum(n - 1 for n in per_instant.values())
    assert duplicates == 0
    for entry in ("latest", "all", "skip"):
        mine = sorted((f for f in fires if f[0] == f"every-minute-{entry}"), key=lambda f: f[1])
        instants = [f[1] for f in mine]
        assert instants == sorted(set(instants))
        assert all(i % 60 == 0 for i in instants)
        # every minute from the first to the last is accounted for exactly once
        assert instants == [instants[0] + 60 * k for k in range(len(instants))]
    # The first tick after the jump owes ~60 instants: the policies decide which fire.
    at_jump = [f for f in fires if f[4] == fired[jump][0]]
    by = {e: Counter(f[2] for f in at_jump if f[0] == f"every-minute-{e}")
          for e in ("latest", "all", "skip")}
    assert by["latest"]["fired"] == 1 and by["latest"]["skipped_misfire"] >= 58, by
    assert by["all"]["fired"] >= 59 and by["all"]["skipped_misfire"] <= 1, by  # catchup 1 h
    assert by["skip"]["fired"] == 1 and by["skip"]["skipped_misfire"] >= 58, by  # on time
    assert integrity(db_path) == "ok"
    report(enqueued=len(jobs), succeeded="—", lost=0, duplicates=duplicates,
           note=("Ticker.run_once(now) with a clock stepped back 1 h (no fire until it passed "
                 "the last handled instant again) then forward 1 h; per-policy outcomes of the "
                 f"forward jump: latest {dict(by['latest'])}, all {dict(by['all'])}, "
                 f"skip {dict(by['skip'])}"),
           ticks=len(fired))


def test_rescue_trusts_the_now_it_is_given(app) -> None:
    """rescue_expired(now) rescues any lease older than ``now``: a wall clock stepped forward
    past the lease makes a fresh lease look expired. Documented here; the supervisor guards
    against it (see the faketime test)."""
    job = app.enqueue("basic.add", args=[1, 2])
    now = time.time()
    rows = app.store.write(lambda tx: tx.claim(["sup:w1"], [QueueLimits("default")], now, 30))
    assert [r["id"] for r in rows] == [job.id]
    assert app.store.write(lambda tx: maintenance.rescue_expired(tx, now + 29, {}, 3)) == 0
    assert app.store.write(lambda tx: maintenance.rescue_expired(tx, now + 3600, {}, 3)) == 1
    job.refresh()
    assert job.state in (litejobs.State.QUEUED, litejobs.State.SCHEDULED)
    assert "lease expired" in (job.attempts()[0].error or "")


FAKETIME_LIBS = [Path(p) for p in (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)]


@pytest.fixture
def faketime_lib() -> Path:
    for lib in FAKETIME_LIBS:
        if lib.exists():
            return lib
    pytest.skip("libfaketime is not installed (apt-get install faketime): the real-supervisor "
                "clock-step scenario needs it to step a process's wall clock")


@pytest.fixture
def supervisors() -> Iterator[list[SupervisorProcess]]:
    procs: list[SupervisorProcess] = []
    yield procs
    for sup in procs:
        sup.kill_group()


#: `litejobs run` with libfaketime loaded, but not passed on to its workers: with a real
#: monotonic clock, libfaketime 0.9 makes Python's time.sleep fail (EINVAL), which would kill
#: the workers' heartbeat threads. A clock step concerns the supervisor: it owns every lease.
FAKED_RUN = ("import os, sys; os.environ.pop('LD_PRELOAD'); from litejobs.cli import main; "
             "main()")


@pytest.mark.slow
def test_supervisor_under_clock_steps(faketime_lib, supervisors, tmp_path, db_path,
                                      report) -> None:
    """Clock steps, real supervisor (libfaketime): no duplicate cron fire, no mass rescue"""
    log = JobLog(tmp_path / "jobs.log")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    cfg = tmp_path / "litejobs.toml"
    cfg.write_text(f'app = "{APP_SPEC}"\nlease = 6\n\n[cron.tick]\nschedule = "* * * * * *"\n'
                   f'task = "basic.logged"\nkwargs = {{ path = "{log}", tag = "cron" }}\n'
                   'overlap = "allow"\n')
    env = clean_env(db_path, LD_PRELOAD=str(faketime_lib), FAKETIME_TIMESTAMP_FILE=str(offset),
                    FAKETIME_NO_CACHE="1", DONT_FAKE_MONOTONIC="1")
    out = tmp_path / "supervisor.log"
    with open(out, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-c", FAKED_RUN, "run", "--config", str(cfg),
                                 "--workers", "4"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    sup = SupervisorProcess(proc, out, time.monotonic())
    supervisors.append(sup)
    wait_for(lambda: "serving" in sup.output() or not sup.running(), 30, "litejobs run",
             details=sup.output)
    app = basic.make_app(db_path)
    long_jobs = [app.enqueue("basic.logged", args=[str(log), 14.0], kwargs={"tag": f"long-{n}"})
                 for n in range(2)]

    def started(job: litejobs.Job) -> bool:
        return bool(log.starts(job.id))

    wait_for(lambda: all(started(j) for j in long_jobs), 30, "the long jobs to start",
             details=sup.output)

    def cron_instants() -> list[float]:
        return [r[0] for r in sql(
            db_path, "SELECT instant FROM cron_fires WHERE outcome = 'fired' ORDER BY instant")]

    wait_for(lambda: len(cron_instants()) >= 2, 15, "cron to fire", details=sup.output)
    offset.write_text("+1h\n")  # the wall clock jumps forward an hour
    stepped = time.time()
    wait_for(lambda: any(i > stepped + 3000 for i in cron_instants()), 15,
             "a cron fire on the stepped clock", details=sup.output)
    # Longer than a lease (6 s) on the new clock: a rescue that trusted it would have run.
    wait_for(lambda: any(i > stepped + 3600 + 7 for i in cron_instants()), 20,
             "7 s of cron fires on the stepped clock", details=sup.output)
    offset.write_text("+0\n")  # and back
    back = time.time()
    wait_for(lambda: all(j.refresh().state.value in TERMINAL for j in long_jobs), 40,
             "the long jobs to finish", details=sup.output)
    probe = app.enqueue("basic.add", args=[1, 2])
    assert probe.result(timeout=20) == 3  # the pool works on the stepped-back clock
    # rows written on the stepped-back clock (fired_at back on real time)
    fires_after_back = sql(db_path, "SELECT entry, instant, outcome FROM cron_fires WHERE "
                                    "fired_at >= ? AND fired_at < ?", (back - 1.0, stepped + 3000))
    assert sup.running(), sup.output()

    starts = Counter(r["id"] for r in log.starts())
    long_runs = {j.id: starts[j.id] for j in long_jobs}
    rescued = sup.output().count(") rescued: ")  # maintenance's line for a rescued job
    cron_jobs = [r for r in log.starts() if r["tag"] == "cron"]
    instants = cron_instants()
    duplicates = sum(n - 1 for n in Counter(instants).values())
    # no instant handled twice; each fire ran as one job
    assert duplicates == 0
    assert len({r["id"] for r in cron_jobs}) == len(cron_jobs)
    assert fires_after_back == [], "the stepped-back clock fired instants already handled"
    assert all(j.state is litejobs.State.SUCCEEDED for j in long_jobs), [
        (j.state, j.error) for j in long_jobs]
    assert long_runs == {j.id: 1 for j in long_jobs}, (long_runs, sup.output()[-3000:])
    assert rescued == 0, sup.output()[-3000:]
    assert integrity(db_path) == "ok"
    report(enqueued=len(long_jobs) + 1, succeeded=len(long_jobs) + 1, lost=0,
           duplicates=duplicates + sum(n - 1 for n in long_runs.values()),
           note=(f"`litejobs run` under libfaketime (monotonic clock real), lease 6 s, two "
                 f"14 s jobs running while the wall clock jumped +1 h for {back - stepped:.0f} "
                 "s and back: each ran once, nothing rescued; cron (every second) fired "
                 f"{len(instants)} distinct instants and none after the back step (its "
                 "instants up to the high-water mark are handled; it resumes when real time "
                 "passes it, an hour later); workers ran on the real clock (libfaketime breaks "
                 "Python's time.sleep there)"),
           rescued=rescued, cron_fires=len(instants))
