"""Moments people type: a duration ago (``30m``, ``2h``, ``7d``) or an ISO-8601 time."""

from __future__ import annotations

from datetime import UTC, datetime

from litejobs.validate import parse_duration

__all__ = ["parse_moment"]


def parse_moment(text: str, name: str, now: float) -> float:
    """``text`` as unix time: a duration before ``now``, or an ISO-8601 time (UTC unless it
    names its offset). ValueError naming ``name`` and what it accepts; a duration out of range
    gets parse_duration's own message."""
    text = text.strip()
    if text[:1].isdigit() and not any(c in text for c in "-:T"):
        return now - parse_duration(text, name)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} {text!r} is neither a duration ago (30m, 2h, 7d) nor an "
                         "ISO-8601 time (2026-12-05 10:00, UTC)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
