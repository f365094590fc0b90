"""The supervisor <-> worker frames (litejobs.protocol): round trips, hostile stored values, and
a reader fed in random pieces."""

from __future__ import annotations

import json
import os
import random

import pytest

from litejobs import protocol


def row(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 7, "task": "t.add", "attempt": 2, "queue": "default", "scheduled_at": 1.5e9,
        "max_attempts": 4, "interrupts": 1, "args": "[1,2]", "kwargs": '{"x":3}'}
    base.update(over)
    return base


def job(frame: bytes) -> protocol.JobMessage:
    (payload,) = protocol.Reader().feed(frame)
    msg = protocol.decode_job(payload)
    assert isinstance(msg, protocol.JobMessage)
    return msg


def test_a_job_survives_the_round_trip() -> None:
    msg = job(protocol.encode_job(row(task="t\nwith newline", queue='q"uote')))
    assert (msg.id, msg.attempt, msg.task, msg.queue, msg.max_attempts, msg.interrupts) == (
        7, 2, "t\nwith newline", 'q"uote', 4, 1)
    assert msg.scheduled_at == 1.5e9
    assert (msg.args, msg.kwargs, msg.problem) == ([1, 2], {"x": 3}, None)


@pytest.mark.parametrize("args, kwargs", [
    ("[\n1,\n2\n]", "{\n}"),                       # valid JSON with newlines (written by hand)
    ('["a\\nb", "\\u0000"]', '{"k": "\\n"}'),        # escapes
])
def test_stored_newlines_cannot_split_a_message(args: str, kwargs: str) -> None:
    msg = job(protocol.encode_job(row(args=args, kwargs=kwargs)))
    assert msg.problem is None
    assert msg.args == json.loads(args) and msg.kwargs == json.loads(kwargs)


@pytest.mark.parametrize("args, kwargs, words", [
    ("[1,", "{}", "not valid JSON"),
    (b"\xff\xfe[1]", "{}", "not valid JSON"),        # not UTF-8
    ("5", "{}", "JSON array and a JSON object"),
    ("[1]", "[]", "JSON array and a JSON object"),
    (12, "{}", "JSON array"),                       # a column of the wrong type
    ("[1]", None, "not valid JSON"),                # a NULL column
    ("[1]\n}{\"id\":99", "{}", "not valid JSON"),   # an attempt to forge a second message
])
def test_unusable_stored_arguments_name_the_job_and_the_problem(args: object, kwargs: object,
                                                                words: str) -> None:
    msg = job(protocol.encode_job(row(args=args, kwargs=kwargs)))
    assert msg.id == 7 and msg.attempt == 2
    assert msg.problem is not None and words in msg.problem


def test_revokes_and_reports_round_trip() -> None:
    (payload,) = protocol.Reader().feed(protocol.revoke([(1, 2), (3, 4)]))
    assert protocol.decode_job(payload) == [(1, 2), (3, 4)]
    frames = (protocol.ready(42) + protocol.HEARTBEAT + protocol.outcome_ok(1, 1, '{"a":[1]}')
              + protocol.outcome_failed(2, 3, "ValueError: x\ny", "tb", True, 0.5)
              + protocol.revoked([(5, 6)]) + protocol.outcome_ok(7, 1, "null", 0.25)
              + protocol.outcome_failed(8, 2, "E: e", None, False, None, 0.125))
    decoded = [protocol.decode_report(p) for p in protocol.Reader().feed(frames)]
    assert decoded == [
        {"ready": 42}, None,
        {"id": 1, "attempt": 1, "ok": True, "result": '{"a":[1]}', "took": 0.0},
        {"id": 2, "attempt": 3, "ok": False, "error": "ValueError: x\ny", "traceback": "tb",
         "retry": True, "delay": 0.5},
        {"revoked": [[5, 6]]},
        {"id": 7, "attempt": 1, "ok": True, "result": "null", "took": 0.25},
        {"id": 8, "attempt": 2, "ok": False, "error": "E: e", "traceback": None,
         "retry": False, "delay": None, "took": 0.125}]


@pytest.mark.parametrize("payload", [b"{not json", b"[1,2]", b'{"id": 1}',
                                     b'{"id": 1, "attempt": 1, "ok": false}', b"\xff",
                                     b"O" + bytes(16) + b"{not json", b"O\x00",
                                     b"P" + bytes(16) + b'[0.5, null, {"a": NaN}]',
                                     b"O" + bytes(16) + b"NaN"])
def test_a_report_that_breaks_the_protocol_is_refused(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_report(payload)


def test_a_frame_over_the_limit_is_refused_before_it_arrives() -> None:
    reader = protocol.Reader(limit=1000)
    with pytest.raises(protocol.ProtocolError, match="over the limit"):
        reader.feed(protocol.frame(b"x" * 1001)[:10])  # the length alone is enough


def test_frames_fed_in_random_pieces_come_out_whole_and_in_order() -> None:
    seed = int(os.environ.get("LITEJOBS_SEED") or random.randrange(2**32))
    print(f"seed {seed} (LITEJOBS_SEED={seed} replays it)")
    rng = random.Random(seed)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 300, 70_000])))
                for _ in range(200)]
    stream = b"".join(protocol.frame(p) for p in payloads)
    reader = protocol.Reader()
    out: list[bytes] = []
    i = 0
    while i < len(stream):
        n = rng.choice([1, 3, 4, 5, 100, 65_536, 200_000])
        out.extend(reader.feed(stream[i:i + n]))
        i += n
    assert out == payloads, f"seed {seed}"
    assert reader.pending() == 0


def test_a_large_frame_arrives_whole_from_small_chunks() -> None:
    big = b'{"id":1,"attempt":1,"ok":true,"result":"' + b"x" * 20_000_000 + b'"}'
    reader = protocol.Reader()
    stream = protocol.frame(big)
    frames: list[bytes] = []
    for i in range(0, len(stream), 65_536):
        frames.extend(reader.feed(stream[i:i + 65_536]))
    assert len(frames) == 1 and frames[0] == big
