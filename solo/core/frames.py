"""Length-prefixed protobuf frames: the wire of the gateway ↔ host call channel.

A frame is a 4-byte big-endian length and that many bytes of one serialized message. Plain TCP
with asyncio (uvloop in the gateway) costs far less per message than a gRPC stream, and the
coalescing stays adaptive: whatever was queued during one event-loop turn leaves in one frame.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The peer sent something that is not a frame of the call channel."""


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise FrameError(f"a message of {len(payload)} bytes is over the {MAX_FRAME}-byte frame limit")
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Accumulates received bytes and yields complete frames."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self.max_frame = max_frame  # lower while the other side is not authenticated yet

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buffer += data
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 4:
            (size,) = _HEADER.unpack_from(buffer, offset)
            if size > self.max_frame:
                raise FrameError(f"frame of {size} bytes is over the {self.max_frame}-byte limit")
            if len(buffer) - offset - 4 < size:
                break
            yield bytes(buffer[offset + 4:offset + 4 + size])
            offset += 4 + size
        if offset:
            del buffer[:offset]
