"""Framing of the gateway ↔ host call channel."""
from __future__ import annotations

import struct

import pytest

from solo._proto import host_pb2
from solo.core.frames import MAX_FRAME, FrameError, FrameReader, frame


def test_frames_survive_any_split_of_the_byte_stream():
    messages = [host_pb2.CallBatch(calls=[host_pb2.Call(id=i, method="m", json="x" * i)]).SerializeToString()
                for i in range(1, 40)]
    stream = b"".join(frame(m) for m in messages)
    for chunk in (1, 3, 7, 64, len(stream)):
        reader = FrameReader()
        got = []
        for start in range(0, len(stream), chunk):
            got.extend(reader.feed(stream[start:start + chunk]))
        assert got == messages


def test_empty_message_is_a_frame():
    assert list(FrameReader().feed(frame(b""))) == [b""]


def test_oversized_frames_are_refused_both_ways():
    with pytest.raises(FrameError, match="over the"):
        list(FrameReader().feed(struct.pack(">I", MAX_FRAME + 1)))

    class Huge(bytes):
        def __len__(self):
            return MAX_FRAME + 1

    with pytest.raises(FrameError):
        frame(Huge())
