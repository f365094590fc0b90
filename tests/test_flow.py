"""Flow control under real `litejobs run` processes: queue and key concurrency, rate limits,
idempotency keys, debounce, expiry, pause/resume, `explain` and the bulk commands.

Every limit is checked from a log the tasks write themselves (``tests.apps.flowapp``: start and
end times, pid, job id; one ``O_APPEND`` write a line), never from what litejobs reports about
itself. Waiting is on conditions with deadlines (``wait_for``). Each test runs on both stores
(the ``database`` fixture): a SQLite file, or a fresh PostgreSQL schema.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import litejobs
from litejobs import State
from tests.apps import flowapp
from tests.conftest import REPO, SupervisorProcess, clean_env, wait_for

pytestmark = pytest.mark.timeout(90)

APP_SPEC = "tests.apps.flowapp:app"
TERMINAL = {State.SUCCEEDED, State.FAILED, State.CANCELLED}


# --- the harness -----------------------------------------------------------------------------


class Flow:
    """One test's database, job log, config files, supervisors and CLI."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.dir = tmp_path
        self.db = database if "://" in database else tmp_path / "flow.db"
        self.log = tmp_path / "flow.log"
        self.app = flowapp.make_app(self.db)
        self.t = {name.split(".", 1)[1]: task for name, task in self.app.tasks.items()}
        self.sups: list[SupervisorProcess] = []
        self.cfg: Path | None = None

    # config and processes

    def config(self, queues: dict[str, dict[str, Any]] | None = None, **top: Any) -> Path:
        """Write a litejobs.toml with ``[queues.X]`` tables; it becomes the default config."""
        data: dict[str, Any] = {"app": APP_SPEC, "database": str(self.db), **top}
        if queues:
            data["queues"] = queues
        path = self.dir / f"flow-{len(list(self.dir.glob('flow-*.toml')))}.toml"
        path.write_text(tomli_w.dumps(data))
        self.cfg = path
        return path

    def start(self, workers: int = 4, config: Path | None = None) -> SupervisorProcess:
        cfg = config or self.cfg or self.config()
        n = len(self.sups)
        log_path = self.dir / f"supervisor-{n}.log"
        cmd = [sys.executable, "-m", "litejobs", "run", "--config", str(cfg),
               "--workers", str(workers), "--grace", "5"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=self.dir, env=clean_env(self.db),
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        sup = SupervisorProcess(proc, log_path, time.monotonic())
        self.sups.append(sup)
        return sup

    def ready(self, workers: int, timeout: float = 20.0) -> None:
        """Block until ``workers`` workers (over all supervisors) are ready at the same time:
        that many barrier jobs must all be running at once to finish."""
        jobs = self.app.enqueue_many(
            [self.t["barrier"].prepare(str(self.log), workers) for _ in range(workers)])
        self.wait_terminal(jobs, timeout)
        assert all(j.state == State.SUCCEEDED for j in jobs), [j.error for j in jobs]
        pids = {j.result(timeout=1) for j in jobs}
        assert len(pids) == workers, f"{workers} barrier jobs ran on only {pids}"

    def details(self) -> str:
        parts = [f"--- supervisor {i} ---\n{s.output()[-4000:]}" for i, s in
                 enumerate(self.sups)]
        stats = self.app.stats()["states"]
        return "\n".join([*parts, f"--- stats: {stats}"])

    def cli(self, *args: Any, config: bool = True, input: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "litejobs", *map(str, args)]
        if config:
            assert self.cfg is not None
            cmd += ["--config", str(self.cfg)]
        return subprocess.run(cmd, cwd=self.dir, env=clean_env(self.db), input=input,
                              stdin=subprocess.DEVNULL if input is None else None,
                              capture_output=True, text=True, timeout=timeout)

    def explain(self, job_id: int, *extra: Any, config: bool = True) -> tuple[dict[str, Any],
                                                                                  str]:
        """``litejobs explain ID --json`` and the plain sentence, both checked to succeed."""
        as_json = self.cli("explain", job_id, "--json", *extra, config=config)
        assert as_json.returncode == 0, as_json.stderr
        plain = self.cli("explain", job_id, *extra, config=config)
        assert plain.returncode == 0, plain.stderr
        sentence = plain.stdout.strip()
        assert len(sentence.splitlines()) == 1, sentence
        assert sentence.startswith(f"job {job_id} "), sentence
        return json.loads(as_json.stdout), sentence

    # waiting and reading

    def wait_terminal(self, jobs: Iterable[litejobs.Job], timeout: float) -> None:
        jobs = list(jobs)
        wait_for(lambda: all(j.refresh().state in TERMINAL for j in jobs), timeout,
                 f"{len(jobs)} jobs to end", interval=0.05, details=self.details)

    def wait_started(self, job: litejobs.Job, timeout: float = 15.0,
                     attempt: int = 1) -> dict[str, Any]:
        return wait_for(
            lambda: next((r for r in self.starts() if r["id"] == job.id
                          and r["attempt"] == attempt), None),
            timeout, f"job {job.id} attempt {attempt} to start", details=self.details)

    def records(self) -> list[dict[str, Any]]:
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n")]

    def starts(self, task: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == "start"
                and (task is None or r["task"] == task)]

    def runs(self, task: str | None = None,
             open_until: float | None = None) -> list[dict[str, Any]]:
        """One record per attempt (start joined with end). An attempt without an end line
        (killed) ends at ``open_until``, or fails the test when it is None."""
        ends = {(r["id"], r["attempt"]): r["end"] for r in self.records()
                if r["event"] == "end"}
        out = []
        for r in self.starts(task):
            end = ends.get((r["id"], r["attempt"]), open_until)
            assert end is not None, f"attempt {r['attempt']} of job {r['id']} has no end"
            out.append({**r, "end": end})
        return out


@pytest.fixture
def flow(tmp_path: Path, database: str) -> Iterator[Flow]:
    f = Flow(tmp_path, database)
    yield f
    for sup in f.sups:
        sup.kill_group()


def max_overlap(runs: Sequence[dict[str, Any]]) -> int:
    """The most runs in progress at any one instant (a run ending at t does not overlap one
    starting at t)."""
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    best = now = 0
    for _, delta in events:
        now += delta
        best = max(best, now)
    return best


def overlaps(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> bool:
    """Whether some run of ``a`` was in progress at the same time as some run of ``b``."""
    return any(x["start"] < y["end"] and y["start"] < x["end"] for x in a for y in b)


def by_group(runs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        out.setdefault(r["group"], []).append(r)
    return out


# --- queue concurrency -----------------------------------------------------------------------


def test_queue_concurrency_cap_holds_with_four_workers(flow: Flow) -> None:
    flow.config(queues={"capped": {"concurrency": 2}})
    flow.start(workers=4)
    flow.ready(4)
    log = str(flow.log)
    capped = flow.app.enqueue_many([flow.t["capped"].prepare(log, 0.25, i) for i in range(8)])
    free = flow.app.enqueue_many([flow.t["work"].prepare(log, 0.25, i) for i in range(4)])
    flow.wait_terminal(capped + free, 30)
    assert all(j.state == State.SUCCEEDED for j in capped + free)

    runs = flow.runs("flow.capped")
    assert len(runs) == 8
    assert max_overlap(runs) == 2, runs  # the cap binds, and is reached
    assert len({r["pid"] for r in runs}) >= 2
    # The cap is the queue's, not the pool's: other queues' jobs ran beside the capped ones.
    assert max_overlap(runs + flow.runs("flow.work")) > 2


def test_queue_concurrency_cap_is_global_across_two_supervisors(flow: Flow) -> None:
    # A cap of 3 over two supervisors of 2 workers each: reaching 3 needs both supervisors, and
    # a per-process cap would let all 4 workers run the queue at once.
    flow.config(queues={"capped": {"concurrency": 3}})
    a = flow.start(workers=2)
    b = flow.start(workers=2)
    flow.ready(4)
    log = str(flow.log)
    jobs = flow.app.enqueue_many([flow.t["capped"].prepare(log, 0.3, i) for i in range(12)])
    flow.wait_terminal(jobs, 30)
    assert all(j.state == State.SUCCEEDED for j in jobs)

    runs = flow.runs("flow.capped")
    assert len(runs) == 12
    assert max_overlap(runs) == 3, runs
    pids = {r["pid"] for r in runs}
    assert pids & a.worker_pids() and pids & b.worker_pids(), (pids, a.worker_pids(),
                                                               b.worker_pids())


# --- per-key concurrency ---------------------------------------------------------------------


def test_string_concurrency_keys_limit_1_and_2(flow: Flow) -> None:
    flow.config()
    flow.start(workers=4)
    flow.ready(4)
    log = str(flow.log)
    serial, duo = flow.t["serial"], flow.t["duo"]
    jobs = flow.app.enqueue_many(
        [serial.prepare(log, 0.25, i, "shared") for i in range(4)]  # key "shared", limit 1
        # the same task with a per-call key: another key, so it runs beside "shared"
        + [serial.options(concurrency_key="other").prepare(log, 0.25, i, "other")
           for i in range(2)]
        + [duo.prepare(log, 0.25, i, "duo") for i in range(4)]  # key "duo", limit 2
    )
    flow.wait_terminal(jobs, 30)
    assert all(j.state == State.SUCCEEDED for j in jobs)

    groups = by_group(flow.runs())
    assert {k: len(v) for k, v in groups.items() if k} == {"shared": 4, "other": 2, "duo": 4}
    assert max_overlap(groups["shared"]) == 1
    assert max_overlap(groups["other"]) == 1
    assert max_overlap(groups["duo"]) == 2  # limit 2: never more, and reached
    # Different keys do run in parallel.
    assert overlaps(groups["shared"], groups["other"])
    assert overlaps(groups["shared"], groups["duo"])


def test_callable_concurrency_keys_limit_1_and_2(flow: Flow) -> None:
    flow.config()
    flow.start(workers=4)
    flow.ready(4)
    log = str(flow.log)
    one, two = flow.t["per_group"], flow.t["per_group2"]
    # The key comes from the arguments: group="a" → key "group-a".
    first = flow.app.enqueue_many(
        [one.prepare(log, 0.2, i, group=g) for i in range(3) for g in ("a", "b")])
    flow.wait_terminal(first, 30)
    second = flow.app.enqueue_many(
        [two.prepare(log, 0.25, i, group=g) for i in range(4) for g in ("c", "d")])
    flow.wait_terminal(second, 30)
    assert all(j.state == State.SUCCEEDED for j in first + second)

    groups = by_group(flow.runs())
    assert {k: len(v) for k, v in groups.items() if k} == {"a": 3, "b": 3, "c": 4, "d": 4}
    assert max_overlap(groups["a"]) == 1
    assert max_overlap(groups["b"]) == 1
    assert overlaps(groups["a"], groups["b"])
    assert max_overlap(groups["c"]) == 2
    assert max_overlap(groups["d"]) == 2
    assert overlaps(groups["c"], groups["d"])


def test_a_keys_backlog_does_not_hold_back_other_keys(flow: Flow) -> None:
    # Eight jobs of key "a" queued ahead of the others fill a claim's first look at the queue;
    # the idle workers must still get the other keys' jobs at once, not at the next poll.
    flow.config()
    flow.start(workers=4)
    flow.ready(4)
    log = str(flow.log)
    one = flow.t["per_group"]
    jobs = flow.app.enqueue_many(
        [one.prepare(log, 0.4, i, group="a") for i in range(8)]
        + [one.prepare(log, 0.4, i, group=g) for g in ("b", "c", "d") for i in range(2)])
    flow.wait_terminal(jobs, 30)
    assert all(j.state == State.SUCCEEDED for j in jobs)
    groups = by_group(flow.runs())
    first = {g: min(r["start"] for r in runs) for g, runs in groups.items() if g}
    assert max_overlap(groups["a"]) == 1
    late = {g: round(t - first["a"], 3) for g, t in first.items() if t - first["a"] > 0.3}
    assert not late, f"keys started late, seconds after key a's first job: {late}"
    assert max_overlap([r for g in "abcd" for r in groups[g]]) == 4


def test_sigkilled_worker_frees_its_key_slot(flow: Flow) -> None:
    flow.config(crash_limit=5)
    sup = flow.start(workers=3)
    flow.ready(3)
    log = str(flow.log)
    slot = flow.t["slot"]  # concurrency_key "slot", limit 1, retries 3
    holder = slot.enqueue(log, 30.0, "holder", "slot", True)  # sleeps 30 s on attempt 1 only
    first = flow.wait_started(holder)
    waiting = [slot.enqueue(log, 0.2, i, "slot") for i in range(2)]
    # Both wait on the key while the holder runs (two idle workers notwithstanding).
    info, sentence = flow.explain(waiting[0].id)
    assert info["reason"] == "key_at_limit" and info["holders"] == [holder.id], info
    assert f"held by job {holder.id}" in sentence
    assert all(j.refresh().state == State.QUEUED for j in waiting)

    assert first["pid"] in sup.worker_pids()
    killed_at = time.time()
    os.kill(first["pid"], signal.SIGKILL)
    flow.wait_terminal([holder, *waiting], 20)
    assert all(j.state == State.SUCCEEDED for j in [holder, *waiting]), flow.details()

    attempts = holder.attempts()
    assert [a.outcome for a in attempts] == ["failed", "succeeded"]
    assert "WorkerDied" in (attempts[0].error or "")
    runs = flow.runs("flow.slot", open_until=killed_at)
    assert len(runs) == 4  # the killed attempt, its retry, and the two waiting jobs
    assert max_overlap(runs) == 1, runs  # the slot was never held twice
    assert all(r["start"] >= killed_at for r in runs if r["id"] != holder.id)
    assert sup.running()


# --- rate limits -----------------------------------------------------------------------------


def test_rate_limit_never_exceeded_in_any_window(flow: Flow) -> None:
    flow.config(queues={"rated": {"rate_limit": "5/s"}})
    flow.start(workers=4)
    flow.ready(4)
    jobs = flow.app.enqueue_many([flow.t["rated"].prepare(str(flow.log), 0.0, i)
                                  for i in range(13)])
    flow.wait_terminal(jobs, 30)
    # Jobs over the limit waited; none failed or needed a second attempt.
    assert all(j.state == State.SUCCEEDED and j.attempt == 1 for j in jobs)
    starts = sorted(r["start"] for r in flow.starts("flow.rated"))
    assert len(starts) == 13
    for i, s in enumerate(starts):
        in_window = [t for t in starts[i:] if t < s + 1.0]
        assert len(in_window) <= 5, (i, [round(t - starts[0], 3) for t in starts])
    # 13 starts at 5 per second need three windows: the limit did bind.
    assert starts[-1] - starts[0] >= 2.0
    # ... and the queue was not starved either: the slots were used as they came.
    assert starts[-1] - starts[0] < 6.0


# --- idempotency -----------------------------------------------------------------------------


def test_idempotency_key_under_four_concurrent_producers(flow: Flow) -> None:
    flow.app.stats()  # create the file and schema before the race
    go = flow.dir / "go"
    log = str(flow.log)
    per = 25
    code = ("import sys, json; from tests.apps import flowapp; "
            "flowapp.produce(sys.argv[1], sys.argv[2], sys.argv[3], "
            "json.loads(sys.argv[4]), json.loads(sys.argv[5]), int(sys.argv[6]))")
    specs = [("flow.work", "order-42", [log, 0, "keyed"]),
             ("flow.unique", None, [log, 0, "derived"])]  # unique_for: key from the args
    procs = [subprocess.Popen([sys.executable, "-c", code, str(flow.db), str(go), task,
                               json.dumps(key), json.dumps(args), str(per)],
                              cwd=REPO, env=clean_env(flow.db), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for task, key, args in specs for _ in range(4)]
    try:
        # All of them import litejobs first; the go file releases them together.
        go.write_text("go")
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    ids = [json.loads(out) for out, _ in outs]
    keyed = {i for batch in ids[:4] for i in batch}
    derived = {i for batch in ids[4:] for i in batch}
    assert all(len(batch) == per for batch in ids)
    assert len(keyed) == 1 and len(derived) == 1, (keyed, derived)
    assert keyed != derived
    work = flow.app.store.list_jobs(task="flow.work")
    assert [r["id"] for r in work if r["key"] == "order-42"] == list(keyed)
    assert len(flow.app.store.list_jobs(task="flow.unique")) == 1
    assert flow.app.stats()["states"]["queued"] == 2


def test_unique_for_derives_the_key_from_the_arguments(flow: Flow) -> None:
    unique = flow.t["unique"]
    log = str(flow.log)
    a = unique.enqueue(log, 0, "x", group="g")
    assert unique.enqueue(log, 0, "x", group="g").id == a.id
    # Keyword order does not change the derived key.
    b = unique.enqueue(log, seconds=0, group="g", tag="y")
    assert unique.enqueue(log, tag="y", group="g", seconds=0).id == b.id
    # Other arguments make another key, so another job.
    assert unique.enqueue(log, 0, "z", group="g").id not in (a.id, b.id)
    assert b.id != a.id


def test_failed_or_cancelled_twin_lets_a_new_job_be_made(flow: Flow) -> None:
    flow.config()
    flow.start(workers=2)
    log = str(flow.log)
    failing = flow.t["fail"].options(key="charge-1")
    first = failing.enqueue(log, "first")
    with pytest.raises(litejobs.JobFailed):
        first.result(timeout=20)
    second = failing.enqueue(log, "second")
    assert second.id != first.id  # the failed twin does not count
    with pytest.raises(litejobs.JobFailed):
        second.result(timeout=20)

    ok = flow.t["work"].options(key="report-1")
    done = ok.enqueue(log, 0, "once")
    assert done.result(timeout=20) > 0
    assert ok.enqueue(log, 0, "again").id == done.id  # a succeeded twin is returned
    assert len(flow.starts("flow.work")) == 1

    later = flow.t["work"].options(key="mail-1", delay=60)
    pending = later.enqueue(log, 0, "pending")
    assert later.enqueue(log, 0, "pending").id == pending.id
    assert pending.cancel()
    fresh = later.enqueue(log, 0, "fresh")
    assert fresh.id != pending.id  # the cancelled twin does not count
    assert later.enqueue(log, 0, "fresh").id == fresh.id
    assert [r["tag"] for r in flow.starts("flow.fail")] == ["first", "second"]


# --- debounce --------------------------------------------------------------------------------


def test_debounce_runs_once_with_the_newest_args_after_the_quiet_period(flow: Flow) -> None:
    flow.config()
    flow.start(workers=2)
    flow.ready(2)
    debounced = flow.t["work"].options(debounce=1.0, key="reindex")
    ids = []
    last_enqueue = 0.0
    for n in range(4):
        if n:
            time.sleep(0.15)  # spacing between the calls, not a wait for litejobs
        last_enqueue = time.time()
        ids.append(debounced.enqueue(str(flow.log), 0, f"call-{n}").id)
    assert len(set(ids)) == 1
    job = flow.app.get_job(ids[0])
    assert job is not None
    assert job.result(timeout=20) > 0
    starts = flow.starts("flow.work")
    assert len(starts) == 1, starts
    assert starts[0]["tag"] == "call-3"  # the newest arguments
    assert starts[0]["start"] >= last_enqueue + 1.0  # pushed back by each call
    assert starts[0]["start"] < last_enqueue + 4.0
    assert [r["id"] for r in flow.app.store.list_jobs(task="flow.work")] == [job.id]


# --- expiry ----------------------------------------------------------------------------------


def test_expired_job_is_cancelled_and_never_runs(flow: Flow) -> None:
    flow.config()
    flow.start(workers=2)
    flow.ready(2)
    log = str(flow.log)
    flow.app.pause_queue("p")  # nothing of queue p can start
    doomed = flow.t["paused"].options(expires=0.5).enqueue(log, 0, "doomed")
    patient = flow.t["paused"].enqueue(log, 0, "patient")
    wait_for(lambda: doomed.refresh().state == State.CANCELLED, 10, "the job to expire",
             interval=0.05, details=flow.details)
    assert "expired" in (doomed.error or "")
    assert doomed.attempt == 0 and doomed.attempts() == []
    assert patient.refresh().state == State.QUEUED

    flow.app.resume_queue("p")
    assert patient.result(timeout=20) > 0
    assert [r["tag"] for r in flow.starts("flow.paused")] == ["patient"]
    assert doomed.refresh().state == State.CANCELLED
    info, sentence = flow.explain(doomed.id)
    assert info["reason"] == "cancelled" and "expired" in sentence


def test_expiry_is_enforced_while_every_worker_is_busy(flow: Flow) -> None:
    flow.config()
    flow.start(workers=1)
    flow.ready(1)
    log = str(flow.log)
    busy = flow.t["work"].enqueue(log, 3.0, "busy")
    flow.wait_started(busy)
    doomed = flow.t["work"].options(expires=0.3).enqueue(log, 0, "doomed")
    # Its time runs out while the only worker is busy: it is cancelled then, not whenever a
    # worker next comes free.
    wait_for(lambda: doomed.refresh().state == State.CANCELLED, 2.0,
             "the job to expire while the worker is busy", interval=0.05, details=flow.details)
    assert busy.refresh().state == State.RUNNING
    assert "expired" in (doomed.error or "")
    assert busy.result(timeout=10) > 0
    assert [r["tag"] for r in flow.starts("flow.work")] == ["busy"]


# --- pause / resume --------------------------------------------------------------------------


def test_pause_and_resume_a_queue(flow: Flow) -> None:
    flow.config()
    flow.start(workers=3)
    flow.ready(3)
    log = str(flow.log)
    paused = flow.t["paused"]  # queue "p"
    running = paused.enqueue(log, 1.0, "running")
    flow.wait_started(running)

    out = flow.cli("queues", "pause", "p")
    assert out.returncode == 0, out.stderr
    listing = {q["name"]: q for q in json.loads(flow.cli("queues", "--json").stdout)}
    assert listing["p"]["paused"] is True
    waiting = [paused.enqueue(log, 0, f"wait-{i}") for i in range(3)]
    others = [flow.t["work"].enqueue(log, 0, f"other-{i}") for i in range(3)]
    flow.wait_terminal([running, *others], 20)
    # The running job finished; other queues ran; the paused queue's jobs waited.
    assert running.state == State.SUCCEEDED
    assert all(j.state == State.SUCCEEDED for j in others)
    assert all(j.refresh().state == State.QUEUED for j in waiting)
    assert [r["tag"] for r in flow.starts("flow.paused")] == ["running"]
    info, sentence = flow.explain(waiting[0].id)
    assert info["reason"] == "queue_paused" and "paused" in sentence

    flow.app.resume_queue("p")
    flow.wait_terminal(waiting, 20)
    assert all(j.state == State.SUCCEEDED for j in waiting)

    # And the other way round: pause with the API, resume with the command.
    flow.app.pause_queue("p")
    late = paused.enqueue(log, 0, "late")
    marker = flow.t["work"].enqueue(log, 0, "marker")  # enqueued after, runs first
    assert marker.result(timeout=20) > 0
    assert late.refresh().state == State.QUEUED
    out = flow.cli("queues", "resume", "p")
    assert out.returncode == 0, out.stderr
    assert late.result(timeout=20) > 0
    listing = {q["name"]: q for q in json.loads(flow.cli("queues", "--json").stdout)}
    assert listing["p"]["paused"] is False


# --- explain ---------------------------------------------------------------------------------


def test_explain_names_each_reason(flow: Flow) -> None:
    flow.config(queues={"capq": {"concurrency": 1}, "rated": {"rate_limit": "2/m"}})
    log = str(flow.log)
    work = flow.t["work"]

    # Before any supervisor has run.
    later = work.options(delay=60).enqueue(log, 0, "later")
    info, sentence = flow.explain(later.id)
    assert (info["reason"], info["state"]) == ("scheduled", "scheduled")
    assert "scheduled until" in sentence

    orphan = work.enqueue(log, 0, "orphan")
    info, sentence = flow.explain(orphan.id)
    assert info["reason"] == "no_supervisor" and "no running supervisor" in sentence

    unknown = flow.app.enqueue("flow.no_such_task")
    info, sentence = flow.explain(unknown.id, "--app", APP_SPEC, "--database", flow.db,
                                  config=False)
    assert info["reason"] == "unknown_task" and "flow.no_such_task" in sentence

    flow.app.pause_queue("p")
    held = flow.t["paused"].enqueue(log, 0, "held")
    info, sentence = flow.explain(held.id)
    assert info["reason"] == "queue_paused" and "'p' is paused" in sentence

    # With a supervisor.
    flow.start(workers=3)
    hog = flow.t["capq"].enqueue(log, 30.0, "hog")
    flow.wait_started(hog)
    info, sentence = flow.explain(hog.id)
    assert (info["reason"], info["state"]) == ("running", "running")
    assert "running since" in sentence
    blocked = flow.t["capq"].enqueue(log, 0, "blocked")
    info, sentence = flow.explain(blocked.id)
    assert info["reason"] == "queue_at_capacity" and info["holders"] == [hog.id], info
    assert f"jobs {hog.id}" in sentence and "1/1" in sentence

    holder = flow.t["slot"].enqueue(log, 30.0, "holder")
    flow.wait_started(holder)
    keyed = flow.t["slot"].enqueue(log, 0, "keyed")
    info, sentence = flow.explain(keyed.id)
    assert info["reason"] == "key_at_limit" and info["holders"] == [holder.id], info
    assert f"held by job {holder.id}" in sentence and "'slot'" in sentence

    rated = [flow.t["rated"].enqueue(log, 0, i) for i in range(3)]
    flow.wait_terminal(rated[:2], 20)
    assert rated[2].refresh().state == State.QUEUED
    info, sentence = flow.explain(rated[2].id)
    assert info["reason"] == "rate_limited", info
    assert "rate-limited" in sentence and "next slot" in sentence

    info, sentence = flow.explain(rated[0].id)
    assert (info["reason"], info["state"]) == ("succeeded", "succeeded")
    assert "finished succeeded" in sentence

    failed = flow.t["fail"].enqueue(log, "explained")
    flow.wait_terminal([failed], 20)
    info, sentence = flow.explain(failed.id)
    assert (info["reason"], info["state"]) == ("failed", "failed")
    assert "failing on purpose (explained)" in info["error"]
    assert "failing on purpose (explained)" in sentence

    missing = flow.cli("explain", 999999)
    assert missing.returncode != 0 and "no job with id 999999" in missing.stderr
    assert "Traceback" not in missing.stderr


# --- bulk commands ---------------------------------------------------------------------------


def states(app: litejobs.App, jobs: Iterable[litejobs.Job]) -> list[str | None]:
    out = []
    for j in jobs:
        row = app.get_job(j.id)
        out.append(None if row is None else row.state.value)
    return out


def test_bulk_retry_cancel_and_purge(flow: Flow) -> None:
    flow.config()
    sup = flow.start(workers=2)
    log = str(flow.log)
    failed_t = [flow.t["fail"].enqueue(log, i) for i in range(3)]
    failed_u = [flow.t["other_fail"].enqueue(log, i) for i in range(2)]
    succeeded = [flow.t["work"].enqueue(log, 0, i) for i in range(3)]
    cancelled_t = flow.t["fail"].options(delay=60).enqueue(log, "never")
    assert cancelled_t.cancel()
    flow.wait_terminal(failed_t + failed_u + succeeded, 30)
    sup.send(signal.SIGTERM)
    assert sup.wait(20) == 0
    everything = [*failed_t, *failed_u, *succeeded, cancelled_t]
    before = states(flow.app, everything)
    assert before == ["failed"] * 5 + ["succeeded"] * 3 + ["cancelled"]

    # Without --yes and nothing to read a "y" from: abort, change nothing.
    for args in (("retry", "--state", "failed", "--task", "flow.fail"),
                 ("purge", "--state", "succeeded")):
        out = flow.cli(*args)
        assert out.returncode != 0, (args, out.stdout)
        assert "Aborted" in out.stderr, out.stderr
        assert states(flow.app, everything) == before
    out = flow.cli("purge", "--state", "succeeded", input="n\n")
    assert out.returncode != 0 and states(flow.app, everything) == before

    out = flow.cli("retry", "--state", "failed", "--task", "flow.fail", "--yes")
    assert out.returncode == 0, out.stderr
    assert "retry: 3 job(s)" in out.stdout
    assert states(flow.app, everything) == (["queued"] * 3 + ["failed"] * 2
                                            + ["succeeded"] * 3 + ["cancelled"])

    in_p = [flow.t["paused"].enqueue(log, 0, i) for i in range(2)]
    later_p = flow.t["paused"].options(delay=60).enqueue(log, 0, "later")
    out = flow.cli("cancel", "--queue", "p")
    assert out.returncode != 0 and "Aborted" in out.stderr, (out.stdout, out.stderr)
    assert states(flow.app, [*in_p, later_p]) == ["queued", "queued", "scheduled"]
    out = flow.cli("cancel", "--queue", "p", "--yes")
    assert out.returncode == 0, out.stderr
    assert "cancel: 3 job(s)" in out.stdout
    assert states(flow.app, [*in_p, later_p]) == ["cancelled"] * 3
    assert states(flow.app, everything) == (["queued"] * 3 + ["failed"] * 2
                                            + ["succeeded"] * 3 + ["cancelled"])

    out = flow.cli("purge", "--state", "succeeded", "--yes")
    assert out.returncode == 0, out.stderr
    assert "purge: 3 job(s)" in out.stdout
    assert states(flow.app, everything) == (["queued"] * 3 + ["failed"] * 2 + [None] * 3
                                            + ["cancelled"])
    assert all(flow.app.store.attempts(j.id) == [] for j in succeeded)
    out = flow.cli("purge", "--state", "cancelled", input="y\n")  # confirmed at the prompt
    assert out.returncode == 0 and "purge: 4 job(s)" in out.stdout, (out.stdout, out.stderr)
    assert flow.app.stats()["states"] == {"waiting": 0, "scheduled": 0, "queued": 3,
                                          "running": 0, "succeeded": 0, "failed": 2,
                                          "cancelled": 0}

    # The retried jobs run again under a supervisor (and fail again: retries=0).
    flow.start(workers=2)
    flow.wait_terminal(failed_t, 20)
    assert all(j.state == State.FAILED and j.attempt == 2 for j in failed_t)


# --- starts, not claims: jobs sent ahead -----------------------------------------------------


def warm_one_worker(flow: Flow) -> None:
    """One worker, made quick (many short jobs), so it is sent jobs ahead of the one it runs."""
    flow.start(workers=1)
    warm = flow.app.enqueue_many([flow.t["work"].prepare(str(flow.log), 0.0, "warm")
                                  for _ in range(60)])
    flow.wait_terminal(warm, 30)


def test_a_rate_limit_holds_for_starts_when_jobs_wait_behind_a_long_one(flow: Flow) -> None:
    # Before: the rated jobs were claimed (counted as started) while the quick worker ran a
    # long job, then all started in a burst when it ended: 10 starts within milliseconds.
    flow.config(queues={"rated": {"rate_limit": "5/s"}})
    warm_one_worker(flow)
    long = flow.t["work"].options(priority=10).prepare(str(flow.log), 1.5, "long")
    rated = [flow.t["rated"].prepare(str(flow.log), 0.0, i) for i in range(10)]
    jobs = flow.app.enqueue_many([long, *rated])
    flow.wait_terminal(jobs, 30)
    starts = sorted(r["start"] for r in flow.starts("flow.rated"))
    assert len(starts) == 10
    for i, s in enumerate(starts):
        in_window = [t for t in starts[i:] if t < s + 1.0]
        assert len(in_window) <= 5, (i, [round(t - starts[0], 3) for t in starts])


def test_a_job_with_an_expiry_is_not_sent_ahead_where_it_could_not_start_in_time(
        flow: Flow) -> None:
    # Before: claimed behind a long job, it was "running" in the file, so it never expired,
    # and it started long after its expiry.
    flow.config()
    warm_one_worker(flow)
    long = flow.t["work"].options(priority=10).prepare(str(flow.log), 2.0, "long")
    doomed = flow.t["work"].options(expires=0.3).prepare(str(flow.log), 0.0, "doomed")
    first, late = flow.app.enqueue_many([long, doomed])
    flow.wait_terminal([first, late], 30)
    assert late.state == State.CANCELLED and "expired" in (late.error or ""), late.error
    assert not [r for r in flow.starts() if r["id"] == late.id]


# --- rated jobs sent ahead: a start counts from when it is known (issue 11's leftover) -------


def assert_rate(starts: Iterable[float], count: int, period: float) -> None:
    """No more than ``count`` of ``starts`` in any window of ``period`` seconds."""
    times = sorted(starts)
    for i, s in enumerate(times):
        in_window = [t for t in times[i:] if t < s + period]
        assert len(in_window) <= count, (i, [round(t - times[0], 3) for t in times])


def unknown_starts(flow: Flow, table: str = "rate_starts") -> int:
    """Rows of a rate window whose start is not yet known (jobs sent ahead), read through
    the store: the statement is the same on SQLite and PostgreSQL."""
    rows = flow.app.store._read(f"SELECT count(*) AS n FROM {table} WHERE job_id IS NOT NULL")
    return int(rows[0]["n"])


def seed_of_test() -> int:
    seed = int(os.environ.get("LITEJOBS_TEST_SEED") or random.randrange(2**32))
    print(f"seed {seed} (LITEJOBS_TEST_SEED={seed} replays it)")
    return seed


@pytest.mark.parametrize(("kind", "run"), [("queue", 0), ("queue", 1), ("queue", 2),
                                           ("flow key", 0), ("flow key", 1)])
def test_a_rate_limit_holds_for_rated_jobs_sent_ahead_behind_long_ones(
        flow: Flow, kind: str, run: int) -> None:
    # A quick worker is sent the rated jobs behind a long one, their starts counted as not yet
    # known; when it ends they start in a burst, then no more may start until the burst has
    # left the window. Counted at claim (sent ahead), they started 10 in 3 ms. A queue's rate
    # and a flow key's rate alike.
    rng = random.Random(seed_of_test() + run)
    flow.config(queues={"rated": {"rate_limit": "5/s"}})
    warm_one_worker(flow)
    log = str(flow.log)
    task = (flow.t["rated"] if kind == "queue"
            else flow.t["work"].options(flow_key="host", rate_limit="5/s"))
    table = "rate_starts" if kind == "queue" else "flow_starts"
    jobs: list[litejobs.Job] = []
    for r in range(rng.randint(2, 3)):
        long = flow.t["work"].options(priority=10).prepare(log, rng.uniform(0.3, 1.0), "long")
        rated = [task.prepare(log, rng.choice([0.0, 0.0, 0.005, 0.03]), (r, i))
                 for i in range(rng.randint(6, 10))]
        first, *rest = flow.app.enqueue_many([long, *rated])
        jobs += [first, *rest]
        flow.wait_started(first)
        if r == 0:  # sent ahead behind it, their starts not yet known
            assert unknown_starts(flow, table) > 0
        flow.wait_terminal(jobs, 30)
    assert all(j.state == State.SUCCEEDED for j in jobs), [j.error for j in jobs]
    assert_rate([r["start"] for r in flow.starts() if isinstance(r["tag"], list)], 5, 1.0)
    wait_for(lambda: unknown_starts(flow, table) == 0, 10, "every start to be known")


@pytest.mark.parametrize("how", ["cancelled", "revoked", "sigkilled"])
def test_a_rated_job_sent_ahead_and_lost_does_not_hold_the_rate_shut(
        flow: Flow, how: str) -> None:
    flow.config(queues={"rated": {"rate_limit": "3/s"}})
    log = str(flow.log)
    if how == "revoked":  # a second worker idles while the first runs the long job
        flow.start(workers=2)
        flow.ready(2)
        warm = flow.app.enqueue_many([flow.t["work"].prepare(log, 0.0, "warm")
                                      for _ in range(60)])
        flow.wait_terminal(warm, 30)
    else:
        warm_one_worker(flow)
    seconds = 5.0 if how == "sigkilled" else 1.5
    long = flow.t["work"].options(priority=10).prepare(log, seconds, "long", only_first=True)
    first, *rated = flow.app.enqueue_many(
        [long, *[flow.t["rated"].prepare(log, 0.0, i) for i in range(3)]])
    started = flow.wait_started(first)
    if how == "cancelled":
        assert unknown_starts(flow) == 3
        assert all(j.cancel() for j in rated)
        rated = flow.app.enqueue_many([flow.t["rated"].prepare(log, 0.0, i) for i in range(6)])
        # their window held three starts never made: they run once those are settled (at
        # the next poll) and leave it, not never
        flow.wait_terminal(rated, 20)
    elif how == "revoked":
        # taken back for the idle worker: each runs before the long job ends, the window
        # freed of its row when it was given back
        flow.wait_terminal(rated, 20)
        assert all(r["start"] < started["start"] + seconds for r in flow.starts("flow.rated"))
        assert "took back" in flow.sups[0].output(), flow.details()
    else:
        assert unknown_starts(flow) == 3
        os.kill(started["pid"], signal.SIGKILL)
        flow.wait_terminal([first, *rated], 30)
        # given back unstarted when their worker died: the rows went with them, so they
        # start beside the long job's retry in the new worker, not a window later
        again = [r["start"] for r in flow.starts() if r["pid"] != started["pid"]]
        rated_starts = [r["start"] for r in flow.starts("flow.rated")]
        assert len(rated_starts) == 3 and max(rated_starts) - min(again) < 0.8, (
            min(again), rated_starts)
    assert all(j.state == State.SUCCEEDED for j in rated), [j.error for j in rated]
    assert_rate([r["start"] for r in flow.starts("flow.rated")], 3, 1.0)
    wait_for(lambda: unknown_starts(flow) == 0, 10, "every start to be known")


def test_two_supervisors_keep_one_rate_with_jobs_sent_ahead(flow: Flow) -> None:
    seed = seed_of_test()
    rng = random.Random(seed)
    flow.config(queues={"rated": {"rate_limit": "5/s"}})
    flow.start(workers=2)
    flow.start(workers=2)
    flow.ready(4)
    log = str(flow.log)
    warm = flow.app.enqueue_many([flow.t["work"].prepare(log, 0.0, "warm") for _ in range(200)])
    flow.wait_terminal(warm, 30)
    jobs: list[litejobs.Job] = []
    for r in range(3):
        longs = [flow.t["work"].options(priority=10).prepare(log, rng.uniform(0.2, 0.8), "long")
                 for _ in range(rng.randint(1, 3))]
        rated = [flow.t["rated"].prepare(log, rng.choice([0.0, 0.01]), (r, i))
                 for i in range(rng.randint(6, 10))]
        jobs += flow.app.enqueue_many([*longs, *rated])
        flow.wait_started(jobs[-len(rated) - len(longs)])
    flow.wait_terminal(jobs, 60)
    assert all(j.state == State.SUCCEEDED for j in jobs), [j.error for j in jobs]
    assert_rate([r["start"] for r in flow.starts("flow.rated")], 5, 1.0)
    wait_for(lambda: unknown_starts(flow) == 0, 10, "every start to be known")
