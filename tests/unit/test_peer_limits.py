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
from solo.runtime import host_server
from solo.runtime.host_server import (
    MAX_CONNECTIONS,
    MAX_PEER_CONNECTIONS,
    MAX_PEER_IN_FLIGHT,
    MAX_PEER_UNSENT,
    MAX_PEERS_UNSENT,
    CallProtocol,
    HostChannel,
)
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
        except TimeoutError:
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
    except TimeoutError:
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


FLOOD = textwrap.dedent("""
    import asyncio

    class Flood:
        produced = 0

        async def hold(self, seconds):
            await asyncio.sleep(seconds)
            return "done"

        def big(self, size):
            return "x" * size

        async def items(self, size, most):
            for _ in range(most):  # bounded, so the test ends even where nothing holds it back
                Flood.produced += 1
                yield "x" * size
                await asyncio.sleep(0)

        def count(self):
            return Flood.produced
""")


async def flood_channel() -> HostChannel:
    channel = HostChannel()
    channel.instance = await ServiceInstance.load(FLOOD, "flood.py", "", Context(tenant="t", name="flood", version="1"),
                                                  max_concurrency=512)
    return channel


def call(call_id: int, method: str, json: str, stream: bool = False) -> bytes:
    return frame(host_pb2.CallBatch(calls=[host_pb2.Call(id=call_id, method=method, json=json, stream=stream)])
                 .SerializeToString())


def unsent(channel: HostChannel, peer: bool) -> int:
    return sum(c.transport.get_write_buffer_size() for c in channel.connections if c.peer == peer)


def test_a_peer_that_sends_calls_and_never_reads_is_cut_off_before_its_results_pile_up():
    """Each refused call (~6 bytes) became a ~170-byte result the cell kept for a peer that never reads them."""
    async def main():
        loop = asyncio.get_running_loop()
        channel = await loaded()
        peer = await serve(channel, time.time() + 60)
        await loop.sock_sendall(peer, calls(1, MAX_PEER_IN_FLIGHT, 60.0))  # its cap of calls in flight...
        refused = 150_000  # ...then calls that are each refused, ~25 MB of results
        batch = host_pb2.CallBatch(calls=[host_pb2.Call(id=1000 + i) for i in range(refused)])
        most = 0
        sending = asyncio.ensure_future(loop.sock_sendall(peer, frame(batch.SerializeToString())))
        deadline = loop.time() + 10
        while any(c.peer for c in channel.connections) and loop.time() < deadline:
            most = max(most, unsent(channel, True))
            await asyncio.sleep(0.01)
        assert not any(c.peer for c in channel.connections)  # its connection was dropped...
        assert most <= MAX_PEER_UNSENT + (1 << 20)  # ...before the cell held much more than its cap
        assert await closed_within(peer, 5.0)
        sending.cancel()
        peer.close()

    asyncio.run(main())


def test_a_gateway_that_stops_reading_is_waited_for_and_its_next_calls_wait_too():
    """A gateway pauses reading on purpose (its own backpressure): its connection stays, no more of its calls are
    taken while its results are unread, and everything is answered once it reads again."""
    async def main():
        loop = asyncio.get_running_loop()
        channel = await flood_channel()
        gateway = await serve(channel, 0.0)
        size, first = 1 << 20, 40
        for i in range(first):  # 40 MB of results the gateway does not read for now
            await loop.sock_sendall(gateway, call(i + 1, "big", f"[{size}]"))
        await asyncio.sleep(1.0)
        conn = next(iter(channel.connections))
        assert not conn.transport.is_reading()  # no more calls are read from it...
        started = channel.instance.calls
        later = asyncio.ensure_future(loop.sock_sendall(gateway, b"".join(call(first + i + 1, "hold", "[0]")
                                                                           for i in range(20_000))))
        await asyncio.sleep(1.0)
        assert channel.instance.calls - started < 1000  # ...so they are not run while it does not read
        assert channel.connections == {conn}  # and the gateway is never dropped for it
        answers = await results(gateway, FrameReader(), 60.0, want=first + 20_000)
        await later
        assert len(answers) == first + 20_000 and all(not r.HasField("error") for r in answers)
        assert [len(r.json) for r in answers[:first]] == [size + 2] * first
        gateway.close()

    asyncio.run(main())


def test_a_stream_waits_for_its_reader_before_its_next_item():
    async def main():
        loop = asyncio.get_running_loop()
        channel = await flood_channel()
        slow_reader = await serve(channel, time.time() + 60)
        other = await serve(channel, 0.0)
        most = 5000  # 320 MB if nothing held it back
        await loop.sock_sendall(slow_reader, call(1, "items", f"[65536, {most}]", stream=True))
        await asyncio.sleep(1.5)
        await loop.sock_sendall(other, call(1, "count", "[]"))
        produced = int((await results(other, FrameReader(), 10.0, want=1))[0].json)
        assert produced < 100  # a few items fill the socket and the transport's buffer, then it waits
        assert unsent(channel, True) < 4 << 20
        answers = await results(slow_reader, FrameReader(), 60.0, want=most + 1)  # reading lets it go on to the end
        assert len(answers) == most + 1 and answers[-1].end
        slow_reader.close()
        other.close()

    asyncio.run(main())


def test_peers_together_cannot_leave_more_than_their_shared_cap_unread():
    """Each under its own cap, six peers that never read would hold 6 x 14 MB: one of them goes."""
    async def main():
        loop = asyncio.get_running_loop()
        channel = await flood_channel()
        peers = [await serve(channel, time.time() + 60) for _ in range(6)]
        for n, peer in enumerate(peers):
            await loop.sock_sendall(peer, call(1, "big", f"[{(14 << 20) + n}]"))
            await asyncio.sleep(0.3)
        assert sum(1 for c in channel.connections if c.peer) == 5
        assert unsent(channel, True) <= MAX_PEERS_UNSENT + (15 << 20)  # the cap and the frame last written
        for peer in peers:
            peer.close()

    asyncio.run(main())


def test_an_expired_peer_that_never_reads_its_last_results_does_not_keep_its_slot(monkeypatch):
    """Closing waits for the unsent results to leave, which for a peer that never reads is never."""
    monkeypatch.setattr(host_server, "CLOSE_GRACE", 0.5)

    async def main():
        loop = asyncio.get_running_loop()
        channel = await flood_channel()
        peer = await serve(channel, time.time() + 0.5)
        await loop.sock_sendall(peer, call(1, "big", f"[{8 << 20}]"))
        deadline = loop.time() + 5
        while channel.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert not channel.connections
        peer.close()

    asyncio.run(main())


def test_a_peer_that_reads_gets_a_result_larger_than_the_unsent_cap():
    async def main():
        channel = await flood_channel()
        peer = await serve(channel, time.time() + 60)
        size = MAX_PEER_UNSENT + (4 << 20)
        await asyncio.get_running_loop().sock_sendall(peer, call(1, "big", f"[{size}]"))
        answers = await results(peer, FrameReader(), 30.0, want=1)
        assert [len(r.json) for r in answers] == [size + 2]
        peer.close()

    asyncio.run(main())
