"""The gateway ↔ host call channel only serves peers that prove they hold the host's key, never
buffers much from anyone who has not, and proves to the client that it is the real host."""
from __future__ import annotations

import socket
import time

from solo._proto import host_pb2
from solo.core import handshake
from solo.core.frames import FrameReader, frame
from solo.runtime.host_listener import HANDSHAKE_SECONDS, MAX_HANDSHAKES
from tests.conftest import closed_within, source

TARGET = source("""
    class Target:
        def __init__(self):
            self.touched = 0
        def touch(self):
            self.touched += 1
            return "ok"
        def count(self):
            return self.touched
""")
CALL = frame(host_pb2.CallBatch(calls=[host_pb2.Call(id=1, method="touch")]).SerializeToString())


def _connect(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    conn = socket.create_connection((host, int(port)), timeout=5)
    conn.settimeout(HANDSHAKE_SECONDS + 2)
    return conn


def _frames(conn: socket.socket, reader: FrameReader, want: int = 1) -> list[bytes]:
    frames: list[bytes] = []
    try:
        while len(frames) < want and (data := conn.recv(65536)):
            frames.extend(reader.feed(data))
    except (TimeoutError, ConnectionResetError):
        pass
    return frames


def _handshake(conn: socket.socket, credential: str, reader: FrameReader) -> None:
    nonce = handshake.nonce()
    conn.sendall(frame(host_pb2.Hello(identity=handshake.identity_of(credential), nonce=nonce).SerializeToString()))
    challenge = host_pb2.Challenge.FromString(_frames(conn, reader)[0])
    handshake.check(credential, "host", nonce, challenge.nonce, challenge.proof)  # the host is the real one
    conn.sendall(frame(host_pb2.Auth(proof=handshake.proof(credential, "client", nonce, challenge.nonce))
                       .SerializeToString()))


def test_host_refuses_callers_without_its_key(solo, alice, name):
    alice.deploy(TARGET, name)
    route = solo.supervisor.gateway.dispatcher.routes.get("alice", name)
    # a client that guesses the key: the host's proof is under the real key, and the wrong Auth is refused
    with _connect(route.address) as conn:
        reader = FrameReader()
        conn.sendall(frame(host_pb2.Hello(identity="", nonce=handshake.nonce()).SerializeToString()))
        challenge = host_pb2.Challenge.FromString(_frames(conn, reader)[0])
        conn.sendall(frame(host_pb2.Auth(proof=b"\0" * 32).SerializeToString()) + CALL)
        assert _frames(conn, reader) == [] and closed_within(conn, HANDSHAKE_SECONDS + 2)
        assert len(challenge.proof) == 32
    for first in (CALL,                                       # no Hello at all
                  b"\xff\xff\xff\xff garbage",                # a 4 GiB frame is refused before it is buffered
                  frame(b"\x00" * (handshake.MAX_HANDSHAKE_FRAME + 1)),  # a Hello past the handshake's size cap
                  frame(host_pb2.Hello(identity="peer:alice:99999999999").SerializeToString())):  # forged ticket
        with _connect(route.address) as conn:
            conn.sendall(first)
            assert closed_within(conn, HANDSHAKE_SECONDS + 2)
    assert alice.call(name, "count") == 0  # nothing ran
    # the right key works, and the service is unharmed by the attempts
    with _connect(route.address) as conn:
        reader = FrameReader()
        _handshake(conn, route.key, reader)
        conn.sendall(CALL)
        assert host_pb2.ResultBatch.FromString(_frames(conn, reader)[0]).results[0].json == '"ok"'
    assert alice.call(name, "touch") == "ok" and alice.call(name, "count") == 2
    alice.stop(name, remove=True)


def test_silent_and_excess_connections_are_dropped(solo, alice, name):
    alice.deploy(TARGET, name)
    route = solo.supervisor.gateway.dispatcher.routes.get("alice", name)
    started = time.monotonic()
    silent = [_connect(route.address) for _ in range(MAX_HANDSHAKES + 8)]
    try:
        # connections past the cap on handshakes in progress are closed at once...
        extra = silent[-1]
        assert closed_within(extra, 1.0)
        # ...and the ones that never say Hello are closed after the handshake timeout
        assert closed_within(silent[0], HANDSHAKE_SECONDS + 2)
        assert time.monotonic() - started < HANDSHAKE_SECONDS + 3
        # calls through the gateway never stopped working meanwhile
        assert alice.call(name, "touch") == "ok"
    finally:
        for conn in silent:
            conn.close()
    alice.stop(name, remove=True)
