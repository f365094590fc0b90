"""Signing deliveries: the ``Litejobs-Signature`` header, and its check for receivers.

The header is ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``: the timestamp
is signed with the body, so a captured request cannot be replayed once it is older than the
receiver's tolerance, nor its timestamp changed. A receiver checks it with
``litejobs.verify_signature(secret, header, body)``, on the raw body bytes as received (before
any JSON parsing: a re-serialised body would not match).
"""

from __future__ import annotations

import time

__all__ = ["HEADER", "sign", "signature_header", "verify_signature"]

#: The request header a signed delivery carries.
HEADER = "Litejobs-Signature"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    import hashlib  # here: `import litejobs` should not pay for OpenSSL's hashes
    import hmac

    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes, now: float | None = None) -> str:
    """The ``Litejobs-Signature`` value for ``body`` sent at ``now`` (default: the clock)."""
    t = int(time.time() if now is None else now)
    return f"t={t},v1={sign(secret, t, body)}"


def verify_signature(secret: str | bytes, header: str | bytes | None, body: str | bytes,
                     tolerance: float = 300) -> bool:
    """Whether ``header`` (the ``Litejobs-Signature`` value) signs ``body`` under ``secret``,
    sent at most ``tolerance`` seconds from now (either way: clocks drift).

    ``body`` is the request's raw body (bytes, or str taken as UTF-8). Never raises on a
    malformed or missing header: it is then False. Comparison is constant-time; several
    ``v1=`` values (a secret being rotated) pass if any one matches.
    """
    try:
        if isinstance(header, bytes):
            header = header.decode("ascii")
        if not isinstance(header, str) or len(header) > 4096:
            return False
        stamp: int | None = None
        given: list[str] = []
        for part in header.split(","):
            name, sep, value = part.strip().partition("=")
            if not sep:
                return False
            if name == "t":
                if stamp is not None or not value.isascii() or not value.isdigit():
                    return False
                stamp = int(value)
            elif name == "v1":
                given.append(value)
        if stamp is None or not given or not secret:
            return False
        if not tolerance >= 0 or abs(time.time() - stamp) > tolerance:  # NaN: refused
            return False  # a replay, or a clock far off
        raw = body.encode() if isinstance(body, str) else bytes(body)
        expected = sign(secret, stamp, raw).encode()
        import hmac

        ok = False
        for candidate in given:
            # every candidate is compared (no early exit), each in constant time
            ok |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
        return ok
    except (ValueError, TypeError, UnicodeError, OverflowError):
        return False
