"""The gateway ↔ host call channel only serves peers that know the host's key."""
from __future__ import annotations

import socket
import time

from solo._proto import host_pb2
from solo.core.frames import FrameReader, frame
from tests.conftest import source


def _talk(address: str, first: bytes, then: bytes) -> list[bytes]:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(first + then)
        conn.settimeout(2)
        reader, frames = FrameReader(), []
        try:
            while data := conn.recv(65536):
                frames.extend(reader.feed(data))
        except (TimeoutError, ConnectionResetError):
            pass
        return frames


def test_host_refuses_callers_without_its_key(solo, alice, name, tmp_path):
    marker = tmp_path / "touched"
    alice.deploy(source(f"""
        from pathlib import Path
        class Target:
            def touch(self):
                Path({str(marker)!r}).write_text("called")
                return "ok"
    """), name)
    route = solo.supervisor.gateway.dispatcher.routes.get("alice", name)
    call = frame(host_pb2.CallBatch(calls=[host_pb2.Call(id=1, method="touch")]).SerializeToString())
    assert _talk(route.address, frame(host_pb2.Hello(key="guessed").SerializeToString()), call) == []
    assert _talk(route.address, call, call) == []  # no Hello at all
    assert _talk(route.address, b"\xff\xff\xff\xff garbage", b"") == []
    time.sleep(0.2)
    assert not marker.exists()
    # the right key works, and the service is unharmed by the attempts
    answers = _talk(route.address, frame(host_pb2.Hello(key=route.key).SerializeToString()), call)
    assert host_pb2.ResultBatch.FromString(answers[0]).results[0].json == '"ok"'
    assert alice.call(name, "touch") == "ok"
    alice.stop(name, remove=True)
