"""The supervisor <-> worker messages, encoded and decoded in one place.

Both directions are a stream of frames: a 4-byte big-endian length, then that many bytes. No
value inside a frame can split it, whatever a stored column holds (a newline, a NUL, bytes that
are not UTF-8), and a reader collects a large frame in linear time: it waits until the whole
length has arrived instead of scanning its buffer again for each chunk (``litejobs.framing``).

    supervisor -> worker
        job      "J" head <task> <queue> <args> <kwargs>
                 head: id, attempt, max_attempts, interrupts (int64), scheduled_at and the
                 attempt's timeout (double; 0: none), and the byte lengths of task, queue
                 and args (the rest is kwargs). The
                 arguments go as stored, untouched: the worker decodes them and fails that one
                 job if they are not a JSON array and object
        job+     "K" head nk nr <task> <queue> <args> <kwargs> <results> <trace>
                 a job with more than "J" carries: the byte lengths of kwargs and results
                 (uint32; nr = NO_RESULTS when it has none), then a workflow step's upstream
                 results as a JSON array in the order of its ``after``, then the W3C
                 traceparent of the span that enqueued it (the rest; empty: none)
        revoke   {"revoke": [[id, attempt], ...]}          give back jobs sent ahead
        cancel   {"cancel": [[id, attempt], ...]}          cancel these coroutines (they are
                 no longer ours); each still ends with an outcome frame, which is dropped
    worker -> supervisor
        ready    {"ready": pid}                            once the app is imported
        success  "O" id, attempt (int64) <the result as JSON>
        then     {"id", "attempt", "ok": true, "then": [[child, ...], continuation]}
                 a success that returned litejobs.then: each job as the list of its
                 ``NewJob`` fields (validated and encoded by the worker)
        failure  {"id", "attempt", "ok": false, "error", "traceback", "retry", "delay"}
        revoked  {"revoked": [[id, attempt], ...]}         those of a revoke not yet started
        progress "P" id, attempt (int64) [fraction, message, metadata] as JSON
                 the running job's newest progress (fraction 0..1 or null, message or null)
                 and the metadata it set so far in this attempt (an object, or null if
                 none). Each is the whole value, not a change: the newest frame wins, so
                 the worker may coalesce (at most PROGRESS_INTERVAL apart per job, and the
                 newest one always before the outcome) and the supervisor may keep only the
                 newest per job. A frame for an attempt that is no longer running is dropped
        log      "L" job, attempt (int64; 0 outside a job), created (double), level,
                 byte lengths of logger name and task (uint16), then <name> <task> <text>
                 a task's own logging record, already formatted (see litejobs.tasklog)
        h        a heartbeat, every second

The two messages of every job (the job, its success) have fixed binary heads: packing and
unpacking them costs a fraction of parsing JSON objects, on the hottest path there is.

A frame the reader cannot make sense of is the sender's fault alone: the supervisor ends that
worker (its jobs are returned), the worker fails that one job; neither process stops.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from litejobs.framing import LENGTH as _LENGTH
from litejobs.framing import MAX_FRAME, ProtocolError, Reader, frame
from litejobs.thenframes import StepJob, decode_then, outcome_then

__all__ = [
    "HEARTBEAT",
    "MAX_FRAME",
    "NO_RESULTS",
    "PROGRESS_INTERVAL",
    "Cancel",
    "JobMessage",
    "ProtocolError",
    "Reader",
    "StepJob",
    "cancel",
    "decode_job",
    "decode_report",
    "encode_job",
    "frame",
    "outcome_failed",
    "outcome_ok",
    "outcome_then",
    "progress",
    "ready",
    "revoke",
    "revoked",
    "task_log",
]

#: Seconds between two progress frames of one job, at least (the newest waits, coalesced).
PROGRESS_INTERVAL = 0.25
HEARTBEAT = frame(b"h")


# --- supervisor -> worker ----------------------------------------------------------------------

_JOB = struct.Struct(">qqqqddIII")
_EXTRA = struct.Struct(">II")
#: nr of a "K" frame whose job has no upstream results (it is not a waiting step).
NO_RESULTS = 0xFFFFFFFF
_SUCCESS = struct.Struct(">qq")
_TIMED = struct.Struct(">qqd")  # a success: id, attempt, seconds it ran (``took``)


@functools.lru_cache(maxsize=4096)
def _name(value: str) -> bytes:
    """A task or queue name as UTF-8 (names repeat: cached)."""
    return value.encode("utf-8", "surrogateescape")


def _column(value: Any) -> bytes:
    """A stored column as bytes, whatever its type: the worker judges the content."""
    if type(value) is str:
        return value.encode("utf-8", "surrogateescape")
    if type(value) is bytes:
        return value
    return b"" if value is None else str(value).encode()


def encode_job(row: Mapping[str, Any]) -> bytes:
    """The frame that hands a claimed job (a claim's row, see ``store.claims``) to a worker."""
    task = _name(row["task"]) if type(row["task"]) is str else _column(row["task"])
    queue = _name(row["queue"]) if type(row["queue"]) is str else _column(row["queue"])
    args = _column(row["args"])
    kwargs = _column(row["kwargs"])
    timeout: Any = row.get("timeout")
    if type(timeout) not in (float, int) or not timeout > 0:
        timeout = 0.0  # none (or not a number of seconds: only the hard stop knows it then)
    head = _JOB.pack(row["id"], row["attempt"], row["max_attempts"], row["interrupts"],
                     row["scheduled_at"], timeout, len(task), len(queue), len(args))
    results = row.get("results")
    trace = row.get("trace")
    if results is None and trace is None:
        body = b"".join((b"J", head, task, queue, args, kwargs))
    else:
        res = b"" if results is None else _column(results)
        body = b"".join((b"K", head, _EXTRA.pack(len(kwargs), NO_RESULTS if results is None
                                                 else len(res)),
                         task, queue, args, kwargs, res, _column(trace)))
    return _LENGTH.pack(len(body)) + body


def revoke(pairs: Iterable[tuple[int, int]]) -> bytes:
    """Ask a worker to give back the jobs (id, attempt) it has not started."""
    body = ",".join(f"[{int(i)},{int(n)}]" for i, n in pairs)
    return frame(f'{{"revoke":[{body}]}}'.encode())


def cancel(pairs: Iterable[tuple[int, int]]) -> bytes:
    """Ask a worker to cancel the coroutines of these jobs (id, attempt)."""
    body = ",".join(f"[{int(i)},{int(n)}]" for i, n in pairs)
    return frame(f'{{"cancel":[{body}]}}'.encode())


@dataclass(slots=True)
class Cancel:
    """A cancel frame as the worker receives it: the (id, attempt) pairs to cancel."""

    pairs: list[tuple[int, int]]


@dataclass(slots=True)
class JobMessage:
    """A job as the worker receives it. ``problem`` is set when its stored arguments cannot
    be used: the worker fails the job with it instead of running it."""

    id: int
    attempt: int
    task: str
    queue: str
    scheduled_at: float
    max_attempts: int
    interrupts: int
    args: list[Any]
    kwargs: dict[str, Any]
    problem: str | None = None
    #: A workflow step's upstream results, in the order of its ``after`` (None: not a step
    #: with upstream steps).
    results: list[Any] | None = None
    #: The W3C traceparent of the span that enqueued it (None: not traced).
    trace: str | None = None
    #: The attempt's timeout in seconds (None: none).
    timeout: float | None = None
    #: ``time.perf_counter()`` in the worker when the attempt began (``jobrun.context``): its
    #: outcome says how long it ran (``took``), which the supervisor's pace of the worker
    #: uses, not the time the outcome waited for the supervisor to read it.
    began: float = 0.0


def decode_job(payload: bytes) -> JobMessage | list[tuple[int, int]] | Cancel:
    """A job frame as a ``JobMessage``, a revoke frame as its (id, attempt) pairs, or a
    cancel frame as a ``Cancel``.

    Raises ``ProtocolError`` when the frame is neither (then no job can be named); bad
    arguments come back as a message with ``problem`` set."""
    kind = payload[:1]
    if kind not in (b"J", b"K"):
        try:
            msg = json.loads(payload)
            if "cancel" in msg:
                return Cancel([(int(i), int(n)) for i, n in msg["cancel"]])
            return [(int(i), int(n)) for i, n in msg["revoke"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"unknown message: {payload[:200]!r}") from exc
    try:
        job_id, attempt, max_attempts, interrupts, scheduled_at, timeout, nt, nq, na = (
            _JOB.unpack_from(payload, 1))
        at = 1 + _JOB.size
        end = len(payload)
        nr = NO_RESULTS
        if kind == b"K":
            nk, nr = _EXTRA.unpack_from(payload, at)
            at += _EXTRA.size
            end = at + nt + nq + na + nk
    except struct.error as exc:
        raise ProtocolError(f"a job message too short: {payload[:200]!r}") from exc
    task = payload[at:at + nt].decode("utf-8", "replace")
    at += nt
    queue = payload[at:at + nq].decode("utf-8", "replace")
    at += nq
    args: Any = []
    kwargs: Any = {}
    problem = None
    try:
        # one parse for both: the array has exactly two members only when each part is one
        # JSON value; anything else is refused below
        both = json.loads(b"".join((b"[", payload[at:at + na], b",", payload[at + na:end],
                                    b"]")))
    except ValueError:  # UnicodeDecodeError included
        problem = ("the job's stored arguments are not valid JSON (was the row written "
                   "outside litejobs?); fix or cancel it")
    else:
        if len(both) == 2 and type(both[0]) is list and type(both[1]) is dict:
            args, kwargs = both
        elif len(both) == 2:
            problem = (f"the job's stored arguments must be a JSON array and a JSON object, "
                       f"not {type(both[0]).__name__} and {type(both[1]).__name__} (was the "
                       "row written outside litejobs?); fix or cancel it")
        else:
            problem = ("the job's stored arguments are not valid JSON (was the row written "
                       "outside litejobs?); fix or cancel it")
    results = trace = None
    if kind == b"K":
        if nr != NO_RESULTS:
            try:
                results = json.loads(payload[end:end + nr])
            except ValueError:
                results = None
            if type(results) is not list:
                results = []
                problem = problem or ("the step's upstream results are not a JSON array (was "
                                      "the row written outside litejobs?); retry its upstream "
                                      "step")
            end += nr
        trace = payload[end:].decode("utf-8", "replace") or None
    return JobMessage(job_id, attempt, task, queue, scheduled_at, max_attempts, interrupts,
                      args, kwargs, problem, results, trace, timeout if timeout > 0 else None)


# --- worker -> supervisor ----------------------------------------------------------------------

def ready(pid: int) -> bytes:
    return frame(f'{{"ready":{int(pid)}}}'.encode())


def revoked(pairs: Iterable[tuple[int, int]]) -> bytes:
    body = ",".join(f"[{int(i)},{int(n)}]" for i, n in pairs)
    return frame(f'{{"revoked":[{body}]}}'.encode())


def outcome_ok(job_id: int, attempt: int, result: str, took: float = 0.0) -> bytes:
    """A success; ``result`` is the return value as JSON text already; ``took``: seconds
    the attempt ran in its worker."""
    body = b"O" + _TIMED.pack(job_id, attempt, took) + result.encode()
    return _LENGTH.pack(len(body)) + body


def outcome_failed(job_id: int, attempt: int, error: str, traceback: str | None,
                   retry: bool, delay: float | None, took: float | None = None) -> bytes:
    """A failure (``took``: seconds the attempt ran in its worker, when it ran)."""
    fields: dict[str, Any] = {"ok": False, "error": error, "traceback": traceback,
                              "retry": retry, "delay": delay}
    if took is not None:
        fields["took"] = took
    body = json.dumps(fields)
    return frame(f'{{"id":{job_id},"attempt":{attempt},{body[1:]}'.encode())


def progress(job_id: int, attempt: int, fraction: float | None, message: str | None,
             metadata: str | None) -> bytes:
    """A running job's progress and metadata (``metadata``: JSON text of an object)."""
    body = b"".join((b"P", _SUCCESS.pack(job_id, attempt),
                     json.dumps([fraction, message]).encode()[:-1], b",",
                     b"null" if metadata is None else metadata.encode(), b"]"))
    return _LENGTH.pack(len(body)) + body


_LOG = struct.Struct(">qqdHHH")


def task_log(job_id: int, attempt: int, task: str, level: int, name: str, created: float,
             text: str) -> bytes:
    """A task's logging record (``job_id`` 0: logged outside a job)."""
    n = name.encode("utf-8", "replace")[:255]
    t = task.encode("utf-8", "replace")[:1024]
    body = b"".join((b"L", _LOG.pack(job_id, attempt, created, max(0, min(level, 0xFFFF)),
                                     len(n), len(t)), n, t, text.encode("utf-8", "replace")))
    return _LENGTH.pack(len(body)) + body


def _decode_log(payload: bytes) -> dict[str, Any]:
    try:
        job_id, attempt, created, level, nn, nt = _LOG.unpack_from(payload, 1)
    except struct.error as exc:
        raise ProtocolError(f"an unreadable log message: {payload[:200]!r}") from exc
    if not math.isfinite(created):
        raise ProtocolError(f"a log message with a bad time: {payload[:200]!r}")
    at = 1 + _LOG.size
    name = payload[at:at + nn].decode("utf-8", "replace")
    task = payload[at + nn:at + nn + nt].decode("utf-8", "replace")
    text = payload[at + nn + nt:].decode("utf-8", "replace")
    if not job_id:
        return {"log": (None, None, None, level, name, created, text)}
    return {"log": (job_id, task, attempt, level, name, created, text)}


def _decode_progress(payload: bytes) -> dict[str, Any]:
    try:
        job_id, attempt = _SUCCESS.unpack_from(payload, 1)
        fraction, message, metadata = json.loads(payload[1 + _SUCCESS.size:])
    except (struct.error, ValueError, TypeError) as exc:
        raise ProtocolError(f"an unreadable progress message: {payload[:200]!r}") from exc
    if not ((fraction is None or (type(fraction) in (int, float) and 0 <= fraction <= 1))
            and (message is None or type(message) is str)
            and (metadata is None or type(metadata) is dict)):
        raise ProtocolError(f"a progress message with bad values: {payload[:200]!r}")
    try:
        # it goes into a JSON array of the store's as it is: strict JSON only (no NaN)
        meta = None if metadata is None else json.dumps(metadata, separators=(",", ":"),
                                                        allow_nan=False)
    except ValueError as exc:
        raise ProtocolError(f"a progress message with bad metadata: {payload[:200]!r}") from exc
    return {"id": job_id, "attempt": attempt, "progress": (
        None if fraction is None else float(fraction), message, meta)}


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# one decoder for every check: json.loads with an option builds a new one per call
_STRICT = json.JSONDecoder(parse_constant=_not_json)


def decode_report(payload: bytes) -> dict[str, Any] | None:
    """A worker's message as a dict; None for a heartbeat. A success keeps its result as
    JSON text (``"result"``), checked but not rebuilt; a progress message is
    ``{"id", "attempt", "progress": (fraction, message, metadata JSON text)}``. Raises
    ``ProtocolError`` for anything else than the messages above."""
    kind = payload[:1]
    if kind == b"O":
        try:
            job_id, attempt, took = _TIMED.unpack_from(payload, 1)
            result = payload[1 + _TIMED.size:].decode()
            # it goes into a JSON array of the store's: strict JSON only (no NaN)
            _STRICT.decode(result)
        except (struct.error, ValueError) as exc:
            raise ProtocolError(f"an unreadable success: {payload[:200]!r}") from exc
        return {"id": job_id, "attempt": attempt, "ok": True, "result": result, "took": took}
    if payload == b"h":
        return None
    if kind == b"P":
        return _decode_progress(payload)
    if kind == b"L":
        return _decode_log(payload)
    try:
        msg = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"unreadable message from a worker: {payload[:200]!r}") from exc
    if not isinstance(msg, dict):
        raise ProtocolError(f"unreadable message from a worker: {payload[:200]!r}")
    if "ready" in msg or "revoked" in msg:
        return msg
    if msg.get("ok") is True and "then" in msg:
        return decode_then(msg, payload)
    if not (type(msg.get("id")) is int and type(msg.get("attempt")) is int
            and msg.get("ok") is False and isinstance(msg.get("error"), str)):
        raise ProtocolError(f"a failure without id, attempt and error: {payload[:200]!r}")
    return msg
