"""Frames: how the supervisor and its workers cut their byte streams into messages.

A frame is a 4-byte big-endian length, then that many bytes. No value inside a frame can split
it, whatever a stored column holds, and a reader collects a large frame in linear time: it
waits until the whole length has arrived instead of scanning its buffer again for each chunk.
``litejobs.protocol`` says what the frames hold.
"""

from __future__ import annotations

import struct

__all__ = ["LENGTH", "MAX_FRAME", "ProtocolError", "Reader", "frame"]

LENGTH = struct.Struct(">I")
#: The longest frame either side accepts: a job's arguments and a task's result are capped at
#: ``max_payload`` (1 MiB by default) well below this; a longer frame is a broken sender.
MAX_FRAME = 256 * 1024 * 1024


class ProtocolError(Exception):
    """A frame or message that does not follow the protocol."""


def frame(payload: bytes) -> bytes:
    """``payload`` as one frame."""
    return LENGTH.pack(len(payload)) + payload


class Reader:
    """Collects frames from a non-blocking stream: ``feed`` what was read, get whole frames.

    Each byte is looked at a bounded number of times: a frame's bytes are only sliced out once
    its whole length has arrived."""

    __slots__ = ("_buffer", "_need", "limit")

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._need = LENGTH.size  # bytes the buffer must hold before the next frame is whole
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
        while end - start >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buf, start)
            if size > self.limit:
                raise ProtocolError(f"a frame of {size} bytes, over the limit of {self.limit}")
            if end - start - LENGTH.size < size:
                self._need = LENGTH.size + size
                break
            begin = start + LENGTH.size
            out.append(bytes(buf[begin:begin + size]))
            start = begin + size
        else:
            self._need = LENGTH.size
        del buf[:start]
        return out
