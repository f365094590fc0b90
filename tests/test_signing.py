"""litejobs.verify_signature: what a receiver of signed deliveries relies on."""

from __future__ import annotations

import hashlib
import hmac
import random
import time

import pytest

import litejobs
from litejobs.signing import sign, signature_header

SECRET = "s3cret-key"
BODY = b'{"order": 42, "name": "\xc3\xa9t\xc3\xa9"}'


def header_at(t: int, body: bytes = BODY, secret: str = SECRET) -> str:
    return f"t={t},v1={sign(secret, t, body)}"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    t = int(time.time())
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature_header(SECRET, BODY, now=t) == f"t={t},v1={expected}"


def test_a_fresh_signature_verifies_for_bytes_and_str_bodies() -> None:
    header = signature_header(SECRET, BODY)
    assert litejobs.verify_signature(SECRET, header, BODY)
    assert litejobs.verify_signature(SECRET, header, BODY.decode())
    assert litejobs.verify_signature(SECRET.encode(), header.encode(), BODY)


def test_replayed_and_old_signatures_are_refused() -> None:
    now = int(time.time())
    assert litejobs.verify_signature(SECRET, header_at(now - 200), BODY)
    assert not litejobs.verify_signature(SECRET, header_at(now - 400), BODY)
    assert litejobs.verify_signature(SECRET, header_at(now - 400), BODY, tolerance=600)
    # a timestamp from the future (a forged or far-off clock) is outside the tolerance too
    assert not litejobs.verify_signature(SECRET, header_at(now + 400), BODY)
    # a valid old signature with its timestamp moved to now does not match any more
    old = header_at(now - 1000)
    moved = old.replace(f"t={now - 1000}", f"t={now}")
    assert not litejobs.verify_signature(SECRET, moved, BODY)
    assert not litejobs.verify_signature(SECRET, header_at(now), BODY, tolerance=float("nan"))


def test_forged_signatures_are_refused() -> None:
    now = int(time.time())
    good = header_at(now)
    assert not litejobs.verify_signature("another secret", good, BODY)
    assert not litejobs.verify_signature(SECRET, good, BODY + b" ")
    assert not litejobs.verify_signature(SECRET, header_at(now, secret="x"), BODY)
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert not litejobs.verify_signature(SECRET, flipped, BODY)
    # a second v1 (a secret being rotated) passes when one of them matches
    assert litejobs.verify_signature(SECRET, f"{flipped},v1={sign(SECRET, now, BODY)}", BODY)
    assert not litejobs.verify_signature("", good, BODY)


@pytest.mark.parametrize("header", [
    None, "", "garbage", "t=,v1=", "v1=abc", "t=123", "t=abc,v1=00", "t=1e9,v1=00",
    "t=-5,v1=00", "t=٣٣,v1=00", "t=1,t=2,v1=00", "t=99999999999999999999999,v1=00",
    "t=1,v1=é", ",,,", "t=1;v1=2", "x" * 10000, b"\xff\xfe",
])
def test_malformed_headers_are_false_never_an_error(header: str | bytes | None) -> None:
    assert litejobs.verify_signature(SECRET, header, BODY) is False


def test_random_headers_never_raise() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    alphabet = "tv1=,0123456789abcdef ;\x00é"
    now = int(time.time())
    for _ in range(2000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.3:
            header = f"t={now}," + header
        assert isinstance(litejobs.verify_signature(SECRET, header, BODY), bool)
