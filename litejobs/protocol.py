"""The supervisor <-> worker messages, encoded and decoded in one place.

Both directions are a stream of frames: a 4-byte big-endian length, then that many bytes. No
value inside a frame can split it, whatever a stored column holds (a newline, a NUL, bytes that
are not UTF-8), and a reader collects a large frame in linear time: it waits until the whole
length has arrived instead of scanning its buffer again for each chunk.

    supervisor -> worker
        job      {"id", "task", "attempt", "queue", "scheduled_at", "max_attempts",
                  "interrupts", "n"} LF <args: n bytes> <kwargs: the rest>
                 the arguments as stored, untouched: the worker decodes them and fails that
                 one job if they are not a JSON array and object
        revoke   {"revoke": [[id, attempt], ...]}          give back jobs sent ahead
    worker -> supervisor
        ready    {"ready": pid}                            once the app is imported
        outcome  {"id", "attempt", "ok": true, "result": ...}
                 {"id", "attempt", "ok": false, "error", "traceback", "retry", "delay"}
        revoked  {"revoked": [[id, attempt], ...]}         those of a revoke not yet started
        h        a heartbeat, every second

A frame the reader cannot make sense of is the sender's fault alone: the supervisor ends that
worker (its jobs are returned), the worker fails that one job; neither process stops.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HEARTBEAT", "MAX_FRAME", "JobMessage", "ProtocolError", "Reader", "decode_job",
           "decode_report", "encode_job", "frame", "outcome_failed", "outcome_ok", "ready",
           "revoke", "revoked"]

_LENGTH = struct.Struct(">I")
#: The longest frame either side accepts: a job's arguments and a task's result are capped at
#: ``max_payload`` (1 MiB by default) well below this; a longer frame is a broken sender.
MAX_FRAME = 256 * 1024 * 1024


class ProtocolError(Exception):
    """A frame or message that does not follow the protocol."""


def frame(payload: bytes) -> bytes:
    """``payload`` as one frame."""
    return _LENGTH.pack(len(payload)) + payload


HEARTBEAT = frame(b"h")


class Reader:
    """Collects frames from a non-blocking stream: ``feed`` what was read, get whole frames.

    Each byte is looked at a bounded number of times: a frame's bytes are only sliced out once
    its whole length has arrived."""

    __slots__ = ("_buffer", "_need", "limit")

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._need = _LENGTH.size  # bytes the buffer must hold before the next frame is whole
        self.limit = limit

    def pending(self) -> int:
        """Bytes received that are not part of a whole frame yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk``; return the frames it completed, in order. Raises ``ProtocolError``
        for a frame longer than ``limit`` (its length is known before its bytes arrive)."""
        buf = self._buffer
        buf += chunk
        if len(buf) < self._need:
            return []
        out: list[bytes] = []
        start = 0
        end = len(buf)
        while end - start >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buf, start)
            if size > self.limit:
                raise ProtocolError(f"a frame of {size} bytes, over the limit of {self.limit}")
            if end - start - _LENGTH.size < size:
                self._need = _LENGTH.size + size
                break
            begin = start + _LENGTH.size
            out.append(bytes(buf[begin:begin + size]))
            start = begin + size
        else:
            self._need = _LENGTH.size
        del buf[:start]
        return out


# --- supervisor -> worker ----------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _json_str(value: str) -> str:
    """A task or queue name as a JSON string (names repeat: cached)."""
    return json.dumps(value)


def _column(value: Any) -> bytes:
    """A stored argument column as bytes, whatever its type: the worker judges the content."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value
    return b"" if value is None else str(value).encode()


def encode_job(row: Mapping[str, Any]) -> bytes:
    """The frame that hands a claimed job (a claim's row) to a worker."""
    args = _column(row["args"])
    kwargs = _column(row["kwargs"])
    task = row["task"]
    queue = row["queue"]
    head = (
        f'{{"id":{int(row["id"])},'
        f'"task":{_json_str(task) if isinstance(task, str) else json.dumps(str(task))},'
        f'"attempt":{int(row["attempt"])},'
        f'"queue":{_json_str(queue) if isinstance(queue, str) else json.dumps(str(queue))},'
        f'"scheduled_at":{float(row["scheduled_at"])!r},'
        f'"max_attempts":{int(row["max_attempts"])},"interrupts":{int(row["interrupts"])},'
        f'"n":{len(args)}}}\n'
    ).encode()
    return frame(head + args + kwargs)


def revoke(pairs: Iterable[tuple[int, int]]) -> bytes:
    """Ask a worker to give back the jobs (id, attempt) it has not started."""
    body = ",".join(f"[{int(i)},{int(n)}]" for i, n in pairs)
    return frame(f'{{"revoke":[{body}]}}'.encode())


@dataclass(frozen=True, slots=True)
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


def decode_job(payload: bytes) -> JobMessage | list[tuple[int, int]]:
    """A job frame as a ``JobMessage``, or a revoke frame as its (id, attempt) pairs.

    Raises ``ProtocolError`` only when the frame's head is unreadable (then no job can be
    named); bad arguments come back as a message with ``problem`` set."""
    head, sep, rest = payload.partition(b"\n")
    try:
        h = json.loads(head)
    except ValueError as exc:
        raise ProtocolError(f"unreadable message head: {head[:200]!r}") from exc
    if not sep:
        try:
            return [(int(i), int(n)) for i, n in h["revoke"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"unknown message: {head[:200]!r}") from exc
    try:
        n = int(h["n"])
        job_id, attempt, task, queue = int(h["id"]), int(h["attempt"]), str(h["task"]), str(
            h["queue"])
        scheduled_at = float(h["scheduled_at"])
        max_attempts, interrupts = int(h["max_attempts"]), int(h["interrupts"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"a job message without {exc}: {head[:200]!r}") from exc
    problem = None
    args: Any = []
    kwargs: Any = {}
    try:
        args = json.loads(rest[:n])
        kwargs = json.loads(rest[n:])
    except ValueError:  # UnicodeDecodeError included
        problem = ("the job's stored arguments are not valid JSON (was the row written "
                   "outside litejobs?); fix or cancel it")
    else:
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            problem = (f"the job's stored arguments must be a JSON array and a JSON object, "
                       f"not {type(args).__name__} and {type(kwargs).__name__} (was the row "
                       "written outside litejobs?); fix or cancel it")
            args, kwargs = [], {}
    return JobMessage(job_id, attempt, task, queue, scheduled_at, max_attempts, interrupts,
                      args, kwargs, problem)


# --- worker -> supervisor ----------------------------------------------------------------------

def ready(pid: int) -> bytes:
    return frame(f'{{"ready":{int(pid)}}}'.encode())


def revoked(pairs: Iterable[tuple[int, int]]) -> bytes:
    body = ",".join(f"[{int(i)},{int(n)}]" for i, n in pairs)
    return frame(f'{{"revoked":[{body}]}}'.encode())


def outcome_ok(job_id: int, attempt: int, result: str) -> bytes:
    """A success; ``result`` is the return value as JSON text already."""
    return frame(f'{{"id":{job_id},"attempt":{attempt},"ok":true,"result":{result}}}'
                 .encode())


def outcome_failed(job_id: int, attempt: int, error: str, traceback: str | None,
                   retry: bool, delay: float | None) -> bytes:
    body = json.dumps({"ok": False, "error": error, "traceback": traceback, "retry": retry,
                       "delay": delay})
    return frame(f'{{"id":{job_id},"attempt":{attempt},{body[1:]}'.encode())


def decode_report(payload: bytes) -> dict[str, Any] | None:
    """A worker's message as a dict; None for a heartbeat. Raises ``ProtocolError`` for
    anything else than the messages above."""
    if payload == b"h":
        return None
    try:
        msg = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"unreadable message from a worker: {payload[:200]!r}") from exc
    if not isinstance(msg, dict):
        raise ProtocolError(f"unreadable message from a worker: {payload[:200]!r}")
    if "ready" in msg or "revoked" in msg:
        return msg
    if not (isinstance(msg.get("id"), int) and isinstance(msg.get("attempt"), int)
            and isinstance(msg.get("ok"), bool)):
        raise ProtocolError(f"an outcome without id, attempt and ok: {payload[:200]!r}")
    if not msg["ok"] and not isinstance(msg.get("error"), str):
        raise ProtocolError(f"a failure without an error text: {payload[:200]!r}")
    return msg
