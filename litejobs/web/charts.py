"""Bar charts drawn on the server as inline SVG: no chart library, no script, no inline style
(the Content-Security-Policy allows none), so colours come from CSS classes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["FAILED", "Bar", "Chart", "outcome_chart"]

#: Outcomes drawn as failures (red); ``retried`` is drawn apart (amber), the rest as done.
FAILED = frozenset({"failed", "timeout", "crashed", "expired"})

WIDTH = 720
HEIGHT = 120
TOP = 4
BOTTOM = 1  # the axis line


@dataclass(slots=True)
class Bar:
    """One bar: its stacked parts (css class, value) and its tooltip."""

    x: float
    width: float
    parts: list[tuple[str, float, float, float]] = field(default_factory=list)  # cls, y, h, n
    title: str = ""


@dataclass(slots=True)
class Chart:
    title: str
    bars: list[Bar]
    peak: float
    total: dict[str, float]
    left_label: str
    right_label: str
    width: int = WIDTH
    height: int = HEIGHT
    base: float = HEIGHT - BOTTOM


def outcome_chart(title: str, minutes: Iterable[tuple[int, str, float]], now: float,
                  slots: int, slot_minutes: int, left_label: str) -> Chart:
    """Bars of ``slots`` periods of ``slot_minutes`` each, the last one ending at ``now``,
    from per-minute outcome counts (minute, outcome, count)."""
    end_minute = int(now // 60) + 1
    start_minute = end_minute - slots * slot_minutes
    sums = [{"succeeded": 0.0, "failed": 0.0, "retried": 0.0} for _ in range(slots)]
    total = {"succeeded": 0.0, "failed": 0.0, "retried": 0.0}
    for minute, kind, n in minutes:
        if not start_minute <= minute < end_minute:
            continue
        key = "failed" if kind in FAILED else kind
        if key not in total:
            continue  # cancelled: an operator's act, not throughput
        sums[(minute - start_minute) // slot_minutes][key] += n
        total[key] += n
    peak = max((sum(s.values()) for s in sums), default=0.0)
    scale = (HEIGHT - TOP - BOTTOM) / peak if peak else 0.0
    step = WIDTH / slots
    bars: list[Bar] = []
    for i, s in enumerate(sums):
        bar = Bar(x=round(i * step + 1, 2), width=round(max(step - 2, 1), 2))
        y = float(HEIGHT - BOTTOM)
        for cls in ("succeeded", "retried", "failed"):
            n = s[cls]
            if n:
                h = max(n * scale, 1.0)
                y -= h
                bar.parts.append((cls, round(y, 2), round(h, 2), n))
        ago = (slots - i - 1) * slot_minutes
        when = "this minute" if ago == 0 and slot_minutes == 1 else (
            f"{ago} min ago" if slot_minutes == 1 else f"{ago // 60} h ago")
        bar.title = (f"{when}: {s['succeeded']:.0f} succeeded, {s['failed']:.0f} failed, "
                     f"{s['retried']:.0f} retried")
        bars.append(bar)
    return Chart(title, bars, peak, total, left_label, "now")
