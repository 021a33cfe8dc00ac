"""The cell's side of the call channel bounds what a peer (another service, with an expiring ticket) can hold:
calls in flight per connection, the connection itself past its ticket, and connection slots.

A real ServiceInstance serves real CallProtocol connections over Unix socket pairs (no Ray, no network).
"""
from __future__ import annotations

import asyncio
import socket
import textwrap
import time

from solo._proto import host_pb2
from solo.api import Context
from solo.core.frames import FrameReader, frame
from solo.runtime.host_server import (MAX_CONNECTIONS, MAX_PEER_CONNECTIONS, MAX_PEER_IN_FLIGHT, CallProtocol,
                                      HostChannel)
from solo.runtime.instance import ServiceInstance

SLOW = textwrap.dedent("""
    import asyncio

    class Slow:
        async def hold(self, seconds):
            await asyncio.sleep(seconds)
            return "done"
""")


async def serve(channel: HostChannel, expires: float) -> socket.socket:
    """A connection as the host hands it to the cell; returns the caller's end (non-blocking)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    await asyncio.get_running_loop().connect_accepted_socket(lambda: CallProtocol(channel, expires), theirs)
    return ours


async def loaded() -> HostChannel:
    channel = HostChannel()
    channel.instance = await ServiceInstance.load(SLOW, "slow.py", "", Context(tenant="t", name="slow", version="1"),
                                                  max_concurrency=512)
    return channel


def calls(first_id: int, count: int, seconds: float) -> bytes:
    batch = host_pb2.CallBatch(calls=[host_pb2.Call(id=first_id + i, method="hold", json=f"[{seconds}]")
                                      for i in range(count)])
    return frame(batch.SerializeToString())


async def results(sock: socket.socket, reader: FrameReader, within: float, want: int = 0) -> list[host_pb2.Result]:
    """The results that arrive within `within` seconds (until `want` came, or the connection closes)."""
    loop = asyncio.get_running_loop()
    found: list[host_pb2.Result] = []
    until = loop.time() + within
    while (left := until - loop.time()) > 0 and not (want and len(found) >= want):
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
        except asyncio.TimeoutError:
            break
        if not data:
            break
        for payload in reader.feed(data):
            found.extend(host_pb2.ResultBatch.FromString(payload).results)
    return found


async def closed_within(sock: socket.socket, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    try:
        while await asyncio.wait_for(loop.sock_recv(sock, 65536), seconds):
            pass
        return True
    except asyncio.TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_peer_connection_runs_at_most_its_cap_of_calls_and_a_gateway_is_not_capped():
    async def main():
        channel = await loaded()
        peer = await serve(channel, time.time() + 60)
        gateway = await serve(channel, 0.0)
        extra = 6
        await asyncio.get_running_loop().sock_sendall(peer, calls(1, MAX_PEER_IN_FLIGHT + extra, 1.0))
        await asyncio.get_running_loop().sock_sendall(gateway, calls(1, MAX_PEER_IN_FLIGHT + extra, 1.0))
        refused = await results(peer, FrameReader(), 0.5)
        assert len(refused) == extra
        assert all(r.error.code == "RESOURCE_EXHAUSTED" and "not run" in r.error.message for r in refused)
        assert {r.id for r in refused} == set(range(MAX_PEER_IN_FLIGHT + 1, MAX_PEER_IN_FLIGHT + extra + 1))
        assert channel.instance.in_flight == 2 * MAX_PEER_IN_FLIGHT + extra  # the gateway's all run
        done = await results(peer, FrameReader(), 10.0, want=MAX_PEER_IN_FLIGHT)
        assert len(done) == MAX_PEER_IN_FLIGHT and all(r.json == '"done"' for r in done)
        # reusing the id of a running call cannot slip past the cap (it is refused, not run)
        await asyncio.get_running_loop().sock_sendall(peer, calls(1, 1, 1.0) + calls(1, 1, 1.0))
        answers = await results(peer, FrameReader(), 10.0, want=2)
        assert [r.error.code for r in answers] == ["INVALID_ARGUMENT", ""]
        peer.close()
        gateway.close()

    asyncio.run(main())


def test_a_peer_connection_closes_once_its_ticket_expired_and_its_calls_are_answered():
    async def main():
        channel = await loaded()
        quiet = await serve(channel, time.time() + 0.5)
        busy = await serve(channel, time.time() + 0.5)
        gateway = await serve(channel, 0.0)
        await asyncio.get_running_loop().sock_sendall(busy, calls(1, 1, 2.0))
        started = time.monotonic()
        assert await closed_within(quiet, 5.0)  # nothing sent after the expiry: a timer closes it
        assert time.monotonic() - started < 4.0
        answered = await results(busy, FrameReader(), 6.0, want=1)  # a call running at expiry gets its result...
        assert [r.json for r in answered] == ['"done"']
        assert await closed_within(busy, 2.0)  # ...then the connection closes
        assert not await closed_within(gateway, 1.0)  # a gateway's connection has no ticket and stays
        assert channel.connections == {c for c in channel.connections if not c.peer}
        gateway.close()

    asyncio.run(main())


def test_peers_cannot_take_the_connection_slots_kept_for_gateways():
    async def main():
        channel = await loaded()
        later = time.time() + 60
        peers = [await serve(channel, later) for _ in range(MAX_PEER_CONNECTIONS)]
        one_more = await serve(channel, later)
        assert await closed_within(one_more, 2.0)
        gateways = [await serve(channel, 0.0) for _ in range(MAX_CONNECTIONS - MAX_PEER_CONNECTIONS)]
        assert len(channel.connections) == MAX_CONNECTIONS
        await asyncio.get_running_loop().sock_sendall(gateways[-1], calls(1, 1, 0.0))
        assert [r.json for r in await results(gateways[-1], FrameReader(), 10.0, want=1)] == ['"done"']
        for sock in peers + gateways:
            sock.close()

    asyncio.run(main())
