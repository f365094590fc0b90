"""A process on a skewed clock: libfaketime preloaded, not its ``faketime`` wrapper.

The wrapper makes a POSIX semaphore and shared memory named by its own pid, removed only when
it exits normally: a wrapper killed with its process group (as these tests stop supervisors)
leaves them behind, and a later wrapper given the same pid (pid_max is often 32768) fails
with "faketime: sem_open: File exists". Preloaded with ``FAKETIME_DISABLE_SHM``, the library
uses neither."""

from __future__ import annotations

import os

import pytest

LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1")
LIB = next((p for p in LIBS if os.path.exists(p)), None)

needs_faketime = pytest.mark.skipif(
    LIB is None, reason="libfaketime is not installed (apt-get install faketime)")


def skewed_env(offset: str) -> dict[str, str]:
    """Variables that put a process (and the children it starts) ``offset`` off our clock,
    e.g. "-1h" or "+90s"."""
    assert LIB is not None
    return {"LD_PRELOAD": LIB, "FAKETIME": offset, "FAKETIME_DISABLE_SHM": "1"}
