"""The frame of a success that returned ``litejobs.then`` (worker -> supervisor): its
children and continuation, each a ``NewJob`` and its delay, as JSON, checked field by field
on the way in (``protocol.decode_report`` reads it through ``decode_then``)."""

from __future__ import annotations

import json
from typing import Any

from litejobs.framing import ProtocolError, frame
from litejobs.newjob import NewJob

__all__ = ["StepJob", "decode_then", "outcome_then"]


#: A job of a then() success on the wire: these ``NewJob`` fields in this order, then its
#: delay, each with its type and whether it may be null. Encoded and decoded from here alone.
_NEW_JOB_FIELDS: tuple[tuple[str, type | tuple[type, ...], bool], ...] = (
    ("task", str, False), ("queue", str, False), ("priority", int, False),
    ("args", str, False), ("kwargs", str, False), ("run_at", (int, float), False),
    ("max_attempts", int, False), ("timeout", (int, float), True),
    ("expires_at", (int, float), True), ("concurrency_key", str, True),
    ("concurrency_limit", int, True), ("tags", str, True))
# what _new_job checks each field against: the fields' kinds, then the delay's
_NEW_JOB_KINDS = [(kind, nullable) for _, kind, nullable in _NEW_JOB_FIELDS] + [
    ((float, int), True)]

StepJob = tuple[NewJob, float | None]  # a job and its delay (see workflows.step_job)


def outcome_then(job_id: int, attempt: int, children: list[StepJob],
                 continuation: StepJob) -> bytes:
    """A success that returned ``litejobs.then``: its children and continuation, each a job
    and its delay."""
    def fields(job: NewJob, delay: float | None) -> list[Any]:
        return [getattr(job, name) for name, _, _ in _NEW_JOB_FIELDS] + [delay]

    body = [[fields(*c) for c in children], fields(*continuation)]
    return frame(json.dumps({"id": job_id, "attempt": attempt, "ok": True, "then": body},
                            separators=(",", ":")).encode())


def _new_job(fields: Any) -> StepJob:
    if type(fields) is not list or len(fields) != len(_NEW_JOB_KINDS):
        raise ProtocolError("a job of a then() success is not a list of its fields")
    for value, (kind, nullable) in zip(fields, _NEW_JOB_KINDS, strict=True):
        if not ((value is None and nullable) or (type(value) is not bool
                                                 and isinstance(value, kind))):
            raise ProtocolError(f"a job of a then() success has a bad field: {value!r}")
    (task, queue, priority, args, kwargs, run_at, max_attempts, timeout, expires_at, ckey,
     climit, tags, delay) = fields
    return NewJob(task, queue, priority, args, kwargs, float(run_at), max_attempts,
                  None if timeout is None else float(timeout),
                  expires_at=None if expires_at is None else float(expires_at),
                  concurrency_key=ckey, concurrency_limit=climit, tags=tags), (
        None if delay is None else float(delay))


def decode_then(msg: dict[str, Any], payload: bytes) -> dict[str, Any]:
    try:
        children, continuation = msg["then"]
        if type(msg["id"]) is not int or type(msg["attempt"]) is not int:
            raise ProtocolError("no id and attempt")
        kids = [_new_job(c) for c in children]
        cont = _new_job(continuation)
    except (TypeError, ValueError, ProtocolError) as exc:
        raise ProtocolError(f"an unreadable then() success ({exc}): {payload[:200]!r}") from None
    return {"id": msg["id"], "attempt": msg["attempt"], "ok": True, "result": "null",
            "then": (kids, cont)}
