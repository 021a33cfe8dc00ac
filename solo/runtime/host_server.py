"""The service's side of the call channel: runs in the cell, on sockets its host authenticated.

The host (host_listener.py) accepts a gateway's or a peer's connection, runs the handshake, and
hands the socket to the cell; from then on the cell reads CallBatch frames from it and writes
ResultBatch frames back. Results that are ready in the same event-loop turn leave together in one
frame. A peer's connection carries its ticket's expiry: calls after it are answered MOVED, not run,
and the connection is closed once the ticket has expired and its calls are answered.

Peers (other services of the tenant, `solo.discover`) run code Solo does not trust, so the cell
bounds them where the gateway is not bounded: at most `MAX_PEER_IN_FLIGHT` calls in flight per
peer connection (more are answered RESOURCE_EXHAUSTED, not run), and peers together hold at most
`MAX_PEER_CONNECTIONS`, so the last `GATEWAY_RESERVED` connection slots stay free for gateways.

Results leave no faster than the caller reads them: while a connection's unsent results are over the
transport's high-water mark, the cell reads no more calls from it and its streams wait before their
next item. A gateway that stops reading (its own backpressure) is simply waited for; a peer's
connection is closed once its unsent bytes pass `MAX_PEER_UNSENT` (or peers' together pass
`MAX_PEERS_UNSENT`: the peer holding the most loses its connection), so a peer that sends calls and
never reads cannot make the cell hold its results without bound.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from solo._proto import host_pb2
from solo.core.frames import FrameReader, frame
from solo.core.handshake import PEER_TICKET_SECONDS, peer_ticket  # noqa: F401 - the registry signs tickets
from solo.core.payload import decode_args, encode_result
from solo.errors import MOVED, InvalidRequest, Overloaded, SoloError, Unavailable

log = logging.getLogger("solo.cell")
MAX_CONNECTIONS = 256  # call connections one cell serves at once; more are closed at once
GATEWAY_RESERVED = 32  # of those, slots peers can never take: the gateways always get in
MAX_PEER_CONNECTIONS = MAX_CONNECTIONS - GATEWAY_RESERVED
MAX_PEER_IN_FLIGHT = 64  # calls a peer connection may have running at once (a gateway sheds load itself)
MAX_PEER_UNSENT = 16 << 20  # bytes of results a peer connection may leave unread before it is closed
MAX_PEERS_UNSENT = 64 << 20  # the same for all peer connections of the cell together
FLUSH_AT = 64 << 10  # results queued in one turn past this leave at once (so the transport can push back)
CLOSE_GRACE = 10.0  # seconds a closed peer connection's unsent results get to leave before it is dropped


def error_result(call_id: int, exc: SoloError) -> host_pb2.Result:
    return host_pb2.Result(id=call_id, end=True, error=host_pb2.Error(
        code=exc.code, message=exc.message, exception_type=exc.exception_type))


def value_result(call_id: int, value: Any, end: bool) -> host_pb2.Result:
    json_text, raw = encode_result(value)
    if raw is not None:
        return host_pb2.Result(id=call_id, raw=raw, end=end)
    return host_pb2.Result(id=call_id, json=json_text, end=end)


class HostChannel:
    """What the cell serves: the loaded service instance and whether it is frozen for a swap."""

    def __init__(self) -> None:
        self.instance = None  # set once the service is loaded
        self.moved = False  # frozen for a hot swap: new calls are answered MOVED and run nowhere here
        self.connections: set[CallProtocol] = set()


def moved_error() -> Unavailable:
    return Unavailable("the service is being swapped to another version; the call was not run and is re-sent "
                       "to the new version", exception_type=MOVED)


class CallProtocol(asyncio.Protocol):
    """One authenticated connection (a gateway's, or a peer's with its ticket's expiry)."""

    def __init__(self, channel: HostChannel, expires: float = 0.0):
        self.channel = channel
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.expires = expires  # a peer connection's ticket expiry (0: a gateway, no expiry)
        self.tasks: dict[int, asyncio.Task] = {}
        self.outgoing: list[host_pb2.Result] = []
        self.outgoing_bytes = 0
        self.flush_scheduled = False
        self.writable = asyncio.Event()  # clear while the transport's buffer is over its high-water mark
        self.writable.set()
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def peer(self) -> bool:
        return self.expires > 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        connections = self.channel.connections
        if len(connections) >= MAX_CONNECTIONS:
            log.warning("closing a call connection: already %d open", MAX_CONNECTIONS)
            transport.close()
            return
        if self.peer and sum(1 for c in connections if c.peer) >= MAX_PEER_CONNECTIONS:
            log.warning("closing a peer's call connection: peers already hold %d (the rest are kept for gateways)",
                        MAX_PEER_CONNECTIONS)
            transport.close()
            return
        connections.add(self)
        if self.peer:  # a timer, so a peer that goes quiet does not keep its slot past its ticket
            loop = asyncio.get_running_loop()
            self.expiry = loop.call_later(max(0.0, self.expires - time.time()), self.close_if_expired)

    def close_if_expired(self) -> None:
        """Close a peer's connection once its ticket has expired and every call on it is answered (the results
        already queued leave first: a transport flushes its buffer before it closes)."""
        if self.peer and time.time() >= self.expires and not self.tasks and not self.transport.is_closing():
            self.flush()
            self.close_peer()

    def close_peer(self) -> None:
        """Close a peer's connection after its unsent results, but drop it if it does not read them in time
        (a transport that closes waits for its buffer to leave: the slot and the buffer would be held for ever)."""
        self.transport.close()
        if self.transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self.transport.abort)

    def pause_writing(self) -> None:
        """The caller reads results slower than they come: take no more calls from it until it catches up."""
        self.writable.clear()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writable.set()
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self.reader.feed(data):
                expired = self.expires and time.time() >= self.expires
                for call in host_pb2.CallBatch.FromString(payload).calls:
                    if self.transport.is_closing():  # dropped (over its unsent bytes): the rest would go nowhere
                        return
                    if call.cancel:
                        task = self.tasks.get(call.id)
                        if task is not None:
                            task.cancel()
                    elif expired:  # not run: the peer resolves again (a fresh ticket) and re-sends it
                        self.send(error_result(call.id, Unavailable(
                            "this connection's ticket expired; the call was not run", exception_type=MOVED)))
                    elif self.peer and len(self.tasks) >= MAX_PEER_IN_FLIGHT:
                        self.send(error_result(call.id, Overloaded(
                            f"this service already runs {MAX_PEER_IN_FLIGHT} calls from this caller's connection; "
                            "the call was not run. Wait for results before sending more, or retry later")))
                    elif call.id in self.tasks:  # a reused id would orphan the running call's task
                        self.send(error_result(call.id, InvalidRequest(
                            f"call id {call.id} is already running on this connection; the call was not run")))
                    else:
                        self.tasks[call.id] = asyncio.ensure_future(self.run(call))
        except Exception as exc:  # noqa: BLE001 - a bad peer loses its connection, nothing else
            log.warning("closing a call connection: %s", exc)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.channel.connections.discard(self)
        self.writable.set()
        if self.expiry is not None:
            self.expiry.cancel()
        for task in list(self.tasks.values()):
            task.cancel()

    def send(self, result: host_pb2.Result) -> None:
        self.outgoing.append(result)
        self.outgoing_bytes += result.ByteSize()
        if self.outgoing_bytes >= FLUSH_AT:  # a big batch leaves now: the transport's buffer tells if it may
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        results, self.outgoing, self.outgoing_bytes = self.outgoing, [], 0
        if results and not self.transport.is_closing():
            data = frame(host_pb2.ResultBatch(results=results).SerializeToString())
            self.transport.write(data)
            if self.peer and self.transport.get_write_buffer_size() > FLUSH_AT:
                self.bound_unsent(len(data))

    def bound_unsent(self, just_written: int) -> None:
        """Drop a peer's connection whose unread results pass MAX_PEER_UNSENT, or, when peers' together pass
        MAX_PEERS_UNSENT, the peer connection holding the most (a gateway's is never dropped for this: it
        pauses reading on purpose, and is waited for). The frame just written does not count: one result
        larger than the cap still reaches a peer that reads it."""
        unsent = self.transport.get_write_buffer_size() - just_written
        if unsent > MAX_PEER_UNSENT:
            log.warning("closing a peer's call connection: %d bytes of results unread (at most %d)",
                        unsent, MAX_PEER_UNSENT)
            self.transport.abort()
            return
        sizes = {c: c.transport.get_write_buffer_size() for c in self.channel.connections if c.peer}
        sizes[self] = max(0, unsent)
        if sum(sizes.values()) > MAX_PEERS_UNSENT:
            most = max(sizes, key=sizes.__getitem__)
            log.warning("closing a peer's call connection: peers leave %d bytes of results unread (at most %d), "
                        "this one %d", sum(sizes.values()), MAX_PEERS_UNSENT, sizes[most])
            most.transport.abort()

    async def run(self, call: host_pb2.Call) -> None:
        try:
            instance = self.channel.instance
            if instance is None:
                raise Unavailable("the service is not loaded on this host yet")
            if self.channel.moved:
                self.send(error_result(call.id, moved_error()))
                return
            args, kwargs = decode_args(call.json if call.HasField("json") else None,
                                       call.raw if call.HasField("raw") else None)
            if call.stream:
                async for item in instance.stream(call.method, args, kwargs):
                    self.send(value_result(call.id, item, end=False))
                    await self.writable.wait()  # the next item once the caller has read enough of the last
                self.send(host_pb2.Result(id=call.id, end=True))
            else:
                value = await instance.call(call.method, args, kwargs, call.timeout or None)
                self.send(value_result(call.id, value, end=True))
        except SoloError as exc:
            if exc.exception_type == MOVED:  # only a frozen host says MOVED (above), never the service's code
                exc = type(exc)(exc.message, exception_type="")
            self.send(error_result(call.id, exc))
        except asyncio.CancelledError:
            pass
        finally:
            self.tasks.pop(call.id, None)
            if self.peer and not self.tasks:  # after this call's result is flushed (call_soon keeps the order)
                asyncio.get_running_loop().call_soon(self.close_if_expired)
