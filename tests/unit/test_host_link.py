"""solo.core.dispatch.HostLink against a hostile host: the far end of its socket is the tenant's code (a
cell writes results straight to the gateway's socket), so nothing it sends or withholds may grow the
gateway without a bound, or reach a client as anything but the service's own failure.

The host here is a real socket (a socketpair, or TCP on 127.0.0.1) driven by the test."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from solo._proto import host_pb2
from solo.core import dispatch
from solo.core.dispatch import HostLink
from solo.core.frames import FrameReader, frame
from solo.core.routes import Route
from solo.errors import Overloaded, ServiceFailed, Unavailable

ROUTE = Route(tenant="acme", name="svc", version="1", state="RUNNING", address="127.0.0.1:1", key="k" * 32)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def hostile_host():
    """A HostLink on one end of a socketpair (already authenticated, as for a handed socket) and the
    host's end as asyncio streams."""
    ours, theirs = socket.socketpair()
    link = HostLink(ROUTE, sock=ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    return link, reader, writer


async def next_calls(reader: asyncio.StreamReader, frames: FrameReader) -> list[host_pb2.Call]:
    while True:
        got = list(frames.feed(await reader.read(65536)))
        if got:
            return [c for payload in got for c in host_pb2.CallBatch.FromString(payload).calls]


def results(*items: host_pb2.Result) -> bytes:
    return frame(host_pb2.ResultBatch(results=list(items)).SerializeToString())


def test_a_stream_its_client_does_not_read_is_ended_not_buffered_without_bound():
    async def scenario():
        link, reader, writer = await hostile_host()
        stream = link.stream("flood", None, None, None)
        first = asyncio.ensure_future(stream.__anext__())  # sends the call; then the client stops reading
        call, = await next_calls(reader, FrameReader())
        chunk = host_pb2.Result(id=call.id, raw=b"x" * 65536)
        for _ in range(200):  # 12.5 MiB, three times what one stream may hold
            writer.write(results(chunk))
        await writer.drain()
        await asyncio.sleep(0.2)
        assert link._buffered <= dispatch.STREAM_BUFFER
        await first
        with pytest.raises(Overloaded, match="read more slowly than the service yielded"):
            async for _ in stream:
                pass
        assert link._buffered == 0
        # the host was told to stop, and the link still serves other calls
        cancels = [c for c in await next_calls(reader, FrameReader()) if c.cancel]
        assert [c.id for c in cancels] == [call.id]
        assert not link.closed
        await link.aclose()
    run(scenario())


def test_one_item_larger_than_the_stream_buffer_still_arrives():
    async def scenario():
        link, reader, writer = await hostile_host()
        stream = link.stream("big", None, None, None)
        first = asyncio.ensure_future(stream.__anext__())
        call, = await next_calls(reader, FrameReader())
        big = b"b" * (dispatch.STREAM_BUFFER + (1 << 20))
        writer.write(results(host_pb2.Result(id=call.id, raw=big), host_pb2.Result(id=call.id, end=True)))
        assert (await first).raw == big
        assert [item async for item in stream] == []
        await link.aclose()
    run(scenario())


def test_many_unread_streams_stop_the_link_reading_until_their_clients_catch_up():
    async def scenario():
        link, reader, writer = await hostile_host()
        streams = [link.stream("flood", None, None, None) for _ in range(8)]
        firsts = [asyncio.ensure_future(s.__anext__()) for s in streams]
        frames = FrameReader()
        calls = []
        while len(calls) < 8:
            calls += await next_calls(reader, frames)
        chunk = 256 << 10
        sent = 0
        # each stream gets 3 MiB (under STREAM_BUFFER): 24 MiB in all, over LINK_BUFFER
        for _ in range(12):
            for call in calls:
                writer.write(results(host_pb2.Result(id=call.id, raw=b"y" * chunk)))
                sent += chunk
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.5)
        assert link._paused
        assert link._buffered <= dispatch.LINK_BUFFER + (1 << 20)
        assert not drained.done()  # the host's writes block: the backpressure reaches it
        # the clients read: the link reads again and every byte arrives
        got = 0
        for first in firsts:
            got += len((await first).raw)
        for call in calls:
            writer.write(results(host_pb2.Result(id=call.id, end=True)))

        async def rest(s):
            return sum([len(item.raw) async for item in s])
        got += sum(await asyncio.gather(*(rest(s) for s in streams)))
        await drained
        assert got == sent
        assert not link._paused and link._buffered == 0
        await link.aclose()
    run(scenario())


def test_a_host_that_stops_reading_calls_loses_its_link(monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_UNSENT", 1 << 20)

    async def scenario():
        link, reader, writer = await hostile_host()  # never reads
        calls = [asyncio.ensure_future(link.call("m", None, b"z" * (256 << 10), None)) for _ in range(64)]
        done, _ = await asyncio.wait(calls, timeout=30)
        assert len(done) == 64
        errors = {type(c.exception()) for c in calls}
        assert errors == {Unavailable}
        assert "stopped reading calls" in link.closed
        writer.close()
    run(scenario())


def test_errors_a_service_may_not_give_reach_the_client_as_its_failure():
    async def scenario():
        link, reader, writer = await hostile_host()
        frames = FrameReader()
        outcomes = {}
        for code in ("INTERNAL", "UNKNOWN", "UNAUTHENTICATED", "NOT_A_CODE", "NOT_FOUND"):
            pending = asyncio.ensure_future(link.call("m", None, None, None))
            call, = await next_calls(reader, frames)
            writer.write(results(host_pb2.Result(id=call.id, end=True, error=host_pb2.Error(
                code=code, message="m" * 100_000, exception_type="T" * 1000))))
            with pytest.raises(Exception) as err:
                await pending
            outcomes[code] = err.value
        for code in ("INTERNAL", "UNKNOWN", "UNAUTHENTICATED", "NOT_A_CODE"):
            assert isinstance(outcomes[code], ServiceFailed), code
            assert code in outcomes[code].message
        assert outcomes["NOT_FOUND"].code == "NOT_FOUND"
        assert all(len(e.message) < 9000 and len(e.exception_type) <= 200 for e in outcomes.values())
        await link.aclose()
    run(scenario())


def test_a_malformed_result_frame_closes_the_link_with_a_clear_reason():
    async def scenario():
        link, reader, writer = await hostile_host()
        pending = asyncio.ensure_future(link.call("m", None, None, None))
        await next_calls(reader, FrameReader())
        writer.write(frame(b"\xff\xff\xff\xff not protobuf"))
        with pytest.raises(Unavailable, match="malformed frame"):
            await pending
        assert "malformed frame" in link.closed
    run(scenario())


def test_before_the_handshake_a_host_may_send_only_a_small_frame():
    async def scenario():
        sent = asyncio.get_running_loop().create_future()

        async def impostor(reader, writer):
            await reader.read(4096)  # the Hello
            writer.write(struct.pack(">I", 32 << 20) + b"\0" * (1 << 20))  # announces 32 MiB before any proof
            await writer.drain()
            sent.set_result(None)
            await asyncio.sleep(5)

        server = await asyncio.start_server(impostor, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        route = Route(tenant="acme", name="svc", version="1", state="RUNNING", address=f"127.0.0.1:{port}",
                      key="k" * 32)
        link = HostLink(route)
        with pytest.raises(Unavailable, match="malformed frame"):
            await link.call("m", None, None, 10)
        assert link._reader.max_frame == dispatch.PREAUTH_FRAME
        server.close()
    run(scenario())


def test_a_frame_a_kept_result_came_in_is_counted_whole():
    """A result kept from a parsed frame keeps the frame's memory: padding beside a tiny stream item (a huge
    result for no call) must count against the buffers, or a cell could grow the gateway without limit."""
    async def scenario():
        link, reader, writer = await hostile_host()
        stream = link.stream("flood", None, None, None)
        first = asyncio.ensure_future(stream.__anext__())
        call, = await next_calls(reader, FrameReader())
        padding = host_pb2.Result(id=999_999, raw=b"p" * (8 << 20))
        for _ in range(8):
            writer.write(results(host_pb2.Result(id=call.id, json="1"), padding))
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.5)
        assert link._paused and link._buffered >= 2 * (8 << 20)
        assert not drained.done()
        first.cancel()
        drained.cancel()
        await link.aclose()
    run(scenario())


def test_a_link_paused_by_a_client_that_never_reads_ends_that_stream_and_serves_the_others(monkeypatch):
    monkeypatch.setattr(dispatch, "PAUSE_LIMIT", 0.5)

    async def scenario():
        link, reader, writer = await hostile_host()
        frames = FrameReader()
        stuck = link.stream("big", None, None, None)
        first = asyncio.ensure_future(stuck.__anext__())
        call, = await next_calls(reader, frames)
        for _ in range(4):  # 24 MiB for a client that takes only the first item
            writer.write(results(host_pb2.Result(id=call.id, raw=b"s" * (6 << 20))))
        await asyncio.sleep(0.3)
        assert link._paused, link._buffered
        await first
        other = asyncio.ensure_future(link.call("m", None, None, 30))
        unary, = [c for c in await next_calls(reader, frames) if not c.cancel]
        writer.write(results(host_pb2.Result(id=unary.id, json='"done"', end=True)))
        result = await asyncio.wait_for(other, 10)  # arrives once the stuck stream is ended
        assert result.json == '"done"'
        with pytest.raises(Overloaded, match="did not read"):
            async for _ in stuck:
                pass
        assert not link._paused and link._buffered == 0 and not link.closed
        await link.aclose()
    run(scenario())


def test_a_tenants_links_share_one_budget_and_other_tenants_are_not_paused():
    """Each link is bounded, but a tenant with many services would hold many links' worth: past its budget
    (over all its links) its links stop reading, and read again once it is down to half."""
    async def scenario():
        budget = dispatch.TenantBudget(limit=4 << 20)
        hosts = []
        for tenant, items in (("acme", 2), ("acme", 3), ("other", 3)):  # MiB each, under a link's own buffer
            ours, theirs = socket.socketpair()
            route = Route(tenant=tenant, name="svc", version="1", state="RUNNING", address="127.0.0.1:1", key="k")
            link = HostLink(route, sock=ours, budget=budget)
            reader, writer = await asyncio.open_connection(sock=theirs)
            stream = link.stream("flood", None, None, None)
            first = asyncio.ensure_future(stream.__anext__())
            call, = await next_calls(reader, FrameReader())
            writer.write(results(host_pb2.Result(id=call.id, raw=b"0"),
                                 *[host_pb2.Result(id=call.id, raw=b"a" * (1 << 20)) for _ in range(items)]))
            await first
            await asyncio.sleep(0.3)
            hosts.append((link, stream))
        (a, a_stream), (b, b_stream), (c, _) = hosts
        assert budget.held["acme"] > 4 << 20 and b._paused and not a._paused and not c._paused
        for _ in range(2):  # acme's first client reads all it has: acme still holds 3 MiB, over half
            await a_stream.__anext__()
        assert b._paused
        for _ in range(2):  # down to about 1 MiB: under half the budget
            await b_stream.__anext__()
        assert not b._paused and budget.low("acme")
        for link, _ in hosts:
            await link.aclose()
    run(scenario())
