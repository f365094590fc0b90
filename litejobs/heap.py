"""The supervisor's heap: keep freed memory instead of handing it back at every loop turn."""

from __future__ import annotations

__all__ = ["keep_heap"]


def keep_heap() -> None:
    """Keep freed memory at the top of the heap instead of giving it back to the system at
    once. Every loop turn SQLite frees and takes again a few hundred KB (its page cache is
    dropped whenever another connection committed, in WAL mode); when those blocks sit at the
    top of glibc's heap, each free shrinks the heap (brk) and the next turn grows it again,
    page-faulting it back in: ~75 faults and 0.25 ms more per job from enqueue to task start,
    measured, and whether it happens depends on nothing but how the heap is laid out."""
    import ctypes

    m_trim_threshold = -1
    try:
        ctypes.CDLL(None).mallopt(m_trim_threshold, 64 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
