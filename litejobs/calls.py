"""How prepared calls become new jobs: every option validated, the arguments encoded, and a
run of plain calls of one task turned into one bulk insert. Writes nothing: the App hands the
result to the store."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from litejobs import tracing
from litejobs.newjob import NewJob, NewJobs
from litejobs.serialization import dump_batch, dump_call
from litejobs.signatures import check_prepared, check_run
from litejobs.task import PLAIN, CallOptions, Prepared, TaskOptions
from litejobs.validate import (
    INT64_MAX,
    MAX_TIMESTAMP,
    UNLIMITED,
    check_flow_rate,
    check_int,
    check_name,
    check_priority,
    check_retries,
    check_seconds,
    check_tags,
    check_timestamp,
    merge_flow_key,
)

if TYPE_CHECKING:
    from litejobs.app import App

__all__ = ["BATCH_MIN", "DEFAULT_UNIQUE_FOR", "build_job", "encode", "named_call", "ring_for"]

#: The idempotency window when a key is given and the task sets no ``unique_for``.
DEFAULT_UNIQUE_FOR = 24 * 3600.0
#: Plain calls of one task in a row from which enqueue_many inserts them as one batch.
BATCH_MIN = 8


def ring_for(jobs: Sequence[NewJob | NewJobs], now: float) -> bytes:
    """The bell's message for these new jobs: "q" when all are ready now (the supervisor
    just claims), "e" when one may be scheduled (it also looks for the next due time; a
    debounce can move a queued twin back to scheduled)."""
    for job in jobs:
        j = job.template if isinstance(job, NewJobs) else job
        if j.run_at > now or j.debounce is not None:
            return b"e"
    return b"q"


def encode(calls: Sequence[Prepared], now: float, plain: dict[TaskOptions | None, NewJob],
       max_payload: int) -> list[NewJob | NewJobs]:
    """Validate and encode ``calls``: runs of plain calls of one task (options all from the
    task) become one ``NewJobs``, every other call its own ``NewJob``."""
    out: list[NewJob | NewJobs] = []
    i, n = 0, len(calls)
    while i < n:
        p = calls[i]
        static = (plain.get(p.defaults) if type(p) is Prepared and p.options is PLAIN
                  else None)
        j = i + 1
        if static is not None:
            defaults = p.defaults
            while j < n:
                q = calls[j]
                if type(q) is not Prepared or q.options is not PLAIN or (
                        q.defaults is not defaults):
                    break
                j += 1
        # (traced jobs are not batched: each gets its own span; by now, with a plain job of
        # the task remembered, whether tracing is on was decided)
        if j - i >= BATCH_MIN and not tracing.active:
            assert static is not None
            batch = _batch(calls[i:j], static, now, max_payload)
            if batch is not None:
                out.append(batch)
                i = j
                continue
        # (the first plain call of a task is encoded alone: that caches its options)
        out.extend(build_job(q, now, plain, max_payload) for q in calls[i:j])
        i = j
    return out

def _batch(run: Sequence[Prepared], static: NewJob, now: float,
       max_payload: int) -> NewJobs | None:
    check_run(run)  # a call the function could never accept is refused here
    args = [p.args for p in run]
    kwargs = [p.kwargs for p in run] if any(p.kwargs for p in run) else None
    payload = dump_batch(args, kwargs, max_payload)
    if payload is None:
        return None  # some call may be refused: build_job names it
    return NewJobs(replace(static, run_at=now), payload, args, kwargs)

def named_call(app: App, task: str, args: Sequence[Any], kwargs: Mapping[str, Any],
               options: CallOptions = PLAIN) -> Prepared:
    """A call of ``task`` by its name (app.enqueue, the HTTP API, a cron entry): with the
    task's defaults, and its arguments checked against its signature when built, if ``app``
    registers it; as given (a producer need not import every task) if not."""
    registered = app.tasks.get(task)
    if registered is None:
        return Prepared(task, tuple(args), dict(kwargs), options)
    return Prepared(task, tuple(args), dict(kwargs), options, registered.defaults,
                    registered.param_names, app)


def build_job(p: Prepared, now: float, plain: dict[TaskOptions | None, NewJob],
          max_payload: int) -> NewJob:
    """Validate and encode one prepared call (raises TypeError/ValueError; writes
    nothing)."""
    if not isinstance(p, Prepared):
        raise TypeError(f"enqueue_many takes task.prepare(...) values, not {p!r}")
    if p.options is PLAIN:
        static = plain.get(p.defaults)
        if static is not None:  # nothing per call but the arguments: validated once
            if p.app is not None:  # a call the function could never accept is refused
                check_prepared(p)
            args, kwargs = dump_call(p.task, p.args, p.kwargs, max_payload,
                                     p.param_names)
            plain_job = NewJob(p.task, static.queue, static.priority, args, kwargs, now,
                               static.max_attempts, static.timeout,
                               concurrency_key=static.concurrency_key,
                               concurrency_limit=static.concurrency_limit)
            if static.flow_rate is not None:
                plain_job.flow_rate = static.flow_rate
                plain_job.flow_period = static.flow_period
            if tracing.active is not False:
                tracing.stamp(plain_job)
            return plain_job
    d = p.defaults or TaskOptions(name=p.task)
    o = p.options
    queue = check_name("queue", o.queue if o.queue is not None else d.queue)
    priority = check_priority(o.priority if o.priority is not None else d.priority)
    retries = check_retries(o.retries if o.retries is not None else d.retries)
    timeout = o.timeout if o.timeout is not None else d.timeout
    if timeout is not None:
        timeout = check_seconds("timeout", timeout, allow_zero=False)
    run_at = now
    if o.delay is not None and o.run_at is not None:
        raise ValueError("give delay or run_at, not both")
    if o.delay is not None:
        run_at = now + check_seconds("delay", o.delay)
    elif o.run_at is not None:
        if isinstance(o.run_at, datetime):
            if o.run_at.tzinfo is None:
                raise ValueError("run_at must be timezone-aware (e.g. "
                                 "datetime.now(timezone.utc) + timedelta(minutes=5))")
            run_at = check_timestamp("run_at", o.run_at.timestamp())
        else:
            run_at = check_timestamp("run_at", o.run_at)
    expires = None
    if o.expires is not None:
        expires = check_seconds("expires", o.expires, allow_zero=False)
    args, kwargs = dump_call(p.task, p.args, p.kwargs, max_payload, p.param_names)
    key = o.key
    unique_for = d.unique_for
    if key is not None:
        check_name("key", key)
        unique_for = unique_for or DEFAULT_UNIQUE_FOR
    elif unique_for is not None:
        key = json.dumps([json.loads(args), json.loads(kwargs)], sort_keys=True,
                         separators=(",", ":"))
    debounce = None
    if o.debounce is not None:
        if key is None:
            raise ValueError("debounce needs a key: .options(debounce=S, key=...)")
        debounce = check_seconds("debounce", o.debounce)
        run_at = max(run_at, now + debounce)
    # after the debounce: expires counts from the run time the job really gets
    expires_at = None if expires is None else run_at + expires
    if max(run_at, expires_at or 0.0) > MAX_TIMESTAMP:
        raise ValueError("run_at (with delay, debounce and expires) must stay before the "
                         "end of year 9999; give an earlier time or a shorter delay")
    ckey, climit, rate = _flow(p, d, o)
    # a call's tags replace the task's, as every option does
    tags = check_tags(o.tags) if o.tags is not None else check_tags(d.tags) if d.tags else None
    if p.app is not None:  # last: a bad option is named before a call the task cannot take
        check_prepared(p)
    job = NewJob(p.task, queue, priority, args, kwargs, run_at, retries + 1, timeout,
                 key=key, expires_at=expires_at,
                 concurrency_key=ckey, concurrency_limit=climit,
                 unique_for=unique_for, debounce=debounce, tags=tags,
                 flow_rate=None if rate is None else rate[0],
                 flow_period=None if rate is None else rate[1])
    if o is PLAIN and key is None and not callable(d.concurrency_key) and tags is None:
        # Everything but the arguments depends on the task alone: remember it. (A tagged
        # task's jobs are not: the fast path and bulk inserts write no tags.)
        plain[p.defaults] = job
    if tracing.active is not False:
        job = replace(job, trace=None)  # the remembered one must not carry this trace
        tracing.stamp(job)
    return job


def _flow(p: Prepared, d: TaskOptions, o: CallOptions,
          ) -> tuple[str | None, int | None, tuple[int, float] | None]:
    """A call's flow key, its concurrency limit and its rate (docs/flow-keys.md): the call's
    options over the task's; ``flow_key`` and ``concurrency_key`` are one key."""
    static_key = merge_flow_key(o.flow_key, o.concurrency_key, f"task {p.task!r}")
    if static_key is None:
        static_key = d.concurrency_key
    ckey = static_key
    what = "flow_key" if o.flow_key is not None else "concurrency_key"
    if callable(ckey):
        try:
            ckey = ckey(*p.args, **p.kwargs)
        except Exception as exc:
            raise ValueError(f"task {p.task!r}: its {what} function raised "
                             f"{type(exc).__name__}: {exc}; nothing was enqueued") from exc
    rate = d.flow_rate if o.rate_limit is None else check_flow_rate(o.rate_limit)
    climit = d.concurrency_limit
    if o.concurrency_limit is not None:
        climit = check_int("concurrency_limit", o.concurrency_limit, 1, INT64_MAX)
    if ckey is None:
        if rate is not None or o.concurrency_limit is not None:
            raise ValueError(f"task {p.task!r}: rate_limit and concurrency_limit limit the "
                             "jobs of one key: give flow_key= too (a whole queue's limits "
                             "go in litejobs.toml's [queues.NAME])")
        return None, None, None
    ckey = check_name(what, ckey)
    if climit is None:
        climit = 1 if rate is None else UNLIMITED
    return ckey, climit, rate
