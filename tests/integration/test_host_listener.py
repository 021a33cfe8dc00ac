"""The host's call port cannot be filled by one machine that opens connections and stays silent: a first
frame has a short deadline, and handshakes in progress are capped per source address as well as in all.

A real HostListener on 127.0.0.1 and real TCP clients from two loopback source addresses (no Ray).
"""
from __future__ import annotations

import asyncio
import socket
import time

from solo._proto import host_pb2
from solo.core import handshake
from solo.core.frames import FrameReader, frame
from solo.runtime.host_listener import FIRST_FRAME_SECONDS, HANDSHAKE_SECONDS, MAX_HANDSHAKES_PER_IP, HostListener
from tests.conftest import closed_within

KEY = "the-host-key"


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def handshake_as_gateway(port: int, source: str) -> None:
    with connect(port, source) as sock:
        sock.settimeout(5)
        nonce = handshake.nonce()
        sock.sendall(frame(host_pb2.Hello(identity="", nonce=nonce).SerializeToString()))
        reader, frames = FrameReader(), []
        while not frames:
            frames.extend(reader.feed(sock.recv(65536)))
        challenge = host_pb2.Challenge.FromString(frames[0])
        handshake.check(KEY, "host", nonce, challenge.nonce, challenge.proof)
        sock.sendall(frame(host_pb2.Auth(proof=handshake.proof(KEY, "client", nonce, challenge.nonce))
                           .SerializeToString()))
        closed_within(sock, 2.0)  # the listener closes its copy once the cell took the socket


def test_one_source_cannot_take_every_handshake_slot_and_silence_is_dropped_early():
    async def main():
        handed: list[float] = []
        listener = HostListener(KEY, lambda sock, expires: handed.append(expires) or True)
        port = await listener.start("127.0.0.1")
        try:
            started = time.monotonic()
            silent = [await asyncio.to_thread(connect, port, "127.0.0.1") for _ in range(MAX_HANDSHAKES_PER_IP)]
            await asyncio.sleep(0.2)
            assert listener.by_ip == {"127.0.0.1": MAX_HANDSHAKES_PER_IP}
            one_more = await asyncio.to_thread(connect, port, "127.0.0.1")
            assert await asyncio.to_thread(closed_within, one_more, 0.5)  # past this source's cap: closed at once
            await asyncio.to_thread(handshake_as_gateway, port, "127.0.0.2")  # another source still gets in
            assert handed == [0.0]
            # a connection that never sends its Hello is dropped after the first frame's deadline, well before
            # the whole handshake's
            assert all([await asyncio.to_thread(closed_within, s, HANDSHAKE_SECONDS + 2) for s in silent])
            assert time.monotonic() - started < FIRST_FRAME_SECONDS + (HANDSHAKE_SECONDS - FIRST_FRAME_SECONDS) * 0.8
            assert listener.handshakes == 0 and listener.by_ip == {}
            for sock in silent + [one_more]:
                sock.close()
        finally:
            listener.close()

    asyncio.run(main())


def test_on_a_dual_stack_port_an_ipv4_source_is_capped_as_itself():
    """Accepted on an IPv6 socket, an IPv4 client's address is IPv4-mapped (::ffff:127.0.0.1); it counts as
    127.0.0.1, the same source whichever way it arrives."""
    def connect6(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.connect(("::ffff:127.0.0.1", port))
        return sock

    async def main():
        listener = HostListener(KEY, lambda sock, expires: True)
        port = await listener.start("::")
        try:
            silent = [await asyncio.to_thread(connect, port, "127.0.0.1") for _ in range(MAX_HANDSHAKES_PER_IP - 1)]
            silent.append(await asyncio.to_thread(connect6, port))
            await asyncio.sleep(0.2)
            assert listener.by_ip == {"127.0.0.1": MAX_HANDSHAKES_PER_IP}
            one_more = await asyncio.to_thread(connect6, port)
            assert await asyncio.to_thread(closed_within, one_more, 0.5)
            for sock in silent + [one_more]:
                sock.close()
        finally:
            listener.close()

    asyncio.run(main())
