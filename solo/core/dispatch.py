"""Forwarding calls from the gateway to service hosts.

One `HostLink` per host: a persistent TCP connection (framed protobuf, see frames.py) that
carries many calls per frame. Calls made during one event-loop turn leave together in one frame,
so coalescing adapts to load and never waits when there is nothing to coalesce.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from google.protobuf.message import DecodeError

from solo._proto import host_pb2
from solo.core import handshake
from solo.core.frames import MAX_FRAME as MAX_FRAME_AUTHENTICATED
from solo.core.frames import FrameError, FrameReader, frame
from solo.core.linkbuffers import StreamBuffer, TenantBudget
from solo.core.routes import Route, RouteTable
from solo.errors import MOVED, DeadlineExceeded, NotFound, Overloaded, Unavailable, service_error
from solo.security.node_tls import NodeTls, node_name

CONNECT_TIMEOUT = 5.0
MOVED_WAIT = 15.0  # a call answered MOVED (its host froze for a hot swap) is re-sent for at most this long (default)
MOVED_POLL = 0.05  # re-sent at least this often while its route stays (a swap that was abandoned thaws the host)
MOVED_POLL_MAX = 1.0  # ...backing off to this: a host is not trusted to say MOVED only while frozen
# What a host can make the gateway hold. The cell writes results straight to the gateway's socket, and
# its code is the tenant's, so nothing it sends may grow the gateway without a bound:
STREAM_BUFFER = 4 << 20  # bytes of one stream's results waiting for a client that reads slower than the service yields
STREAM_ITEMS = 4  # ...unless fewer items than this wait (a stream of large items is paced by LINK_BUFFER)
LINK_BUFFER = 16 << 20  # bytes of stream results waiting on one link before the link stops reading from its host
MAX_UNSENT = 128 << 20  # bytes of calls written to a host that it has not taken; more and the link is closed
PREAUTH_FRAME = 4096  # largest frame read before the host proved it holds the key
ITEM_OVERHEAD = 640  # what a waiting result costs beyond its payload (measured: ~520-620 B for a tiny one)
PAUSE_LIMIT = 10.0  # seconds a link may stay paused: then the streams holding most are ended, not waited for
# (and across all the links to one tenant: linkbuffers.TENANT_BUFFER)
MAX_ERROR_TEXT = 8192  # characters of a service's error message passed on
_STATE_MESSAGES = {
    "STARTING": "is starting; retry in a moment",
    "STOPPING": "is stopping",
    "RESTARTING": "crashed and is restarting; retry in a moment",
    "STOPPED": "is stopped; deploy it again to call it",
    "FAILED": "has failed",
}


class HostLink(asyncio.Protocol):
    """`sock`: a connection that is already authenticated (a cell's direct call: its host made the
    connection and the handshake, then handed the socket over); otherwise the link connects to the
    route's address and proves the route's key (or peer ticket) in the handshake (core/handshake.py)."""

    def __init__(self, route: Route, sock=None, budget: TenantBudget | None = None, tls: NodeTls | None = None):
        self.address = route.address
        self._tls = tls  # [tls] hosts: connect with TLS where it asks for it (security/node_tls.py)
        self.tenant = route.tenant
        self._budget = budget or TenantBudget()
        self.label = route.name
        self._key = route.key
        self._nonce = handshake.nonce()
        self._authenticated = sock is not None
        self._ids = itertools.count(1)
        self._pending: list[host_pb2.Call] = []
        self._flush_scheduled = False
        self._waiters: dict[int, asyncio.Future | StreamBuffer] = {}
        self._reader = FrameReader(MAX_FRAME_AUTHENTICATED if sock is not None else PREAUTH_FRAME)
        self._buffered = 0  # bytes waiting in streams' buffers (LINK_BUFFER)
        self._paused = False
        self._pause_timer: asyncio.TimerHandle | None = None
        self._streams = 0  # stream calls waiting for results on this link
        self._transport: asyncio.Transport | None = None
        self._connected = asyncio.get_running_loop().create_future()
        self._retiring = False
        self.closed: str | None = None
        asyncio.ensure_future(self._connect(sock))

    async def _connect(self, sock) -> None:
        host, _, port = self.address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            if sock is not None:
                await loop.create_connection(lambda: self, sock=sock)
                return
            if not port.isdigit():
                self._close(f"no address to connect to ({self.address!r})")
                return
            host = host.strip("[]")
            context = self._tls.client if self._tls is not None and self._tls.required(host) else None
            secure = {"ssl": context, "server_hostname": host, "ssl_handshake_timeout": CONNECT_TIMEOUT} if context else {}
            await asyncio.wait_for(loop.create_connection(lambda: self, host, int(port), **secure), CONNECT_TIMEOUT)
            await asyncio.wait_for(asyncio.shield(self._connected), CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as exc:  # ssl.SSLError is an OSError
            self._close(f"cannot connect to its process ({exc or type(exc).__name__})")

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object") if self._tls is not None else None
        if ssl_object is not None:
            try:
                node_name(ssl_object)
            except handshake.HandshakeError as exc:
                self._close(f"the process at {self.address} is not on a Solo node ({exc})")
                return
        if self._authenticated:
            self._opened()
        else:
            hello = host_pb2.Hello(identity=handshake.identity_of(self._key), nonce=self._nonce)
            transport.write(frame(hello.SerializeToString()))

    def _opened(self) -> None:
        if not self._connected.done():
            self._connected.set_result(None)
        self._flush()

    def _challenged(self, payload: bytes) -> None:
        """The host's Challenge: check its proof before anything is sent, then prove ours."""
        challenge = host_pb2.Challenge.FromString(payload)
        handshake.check(self._key, "host", self._nonce, challenge.nonce, challenge.proof)
        auth = host_pb2.Auth(proof=handshake.proof(self._key, "client", self._nonce, challenge.nonce))
        self._transport.write(frame(auth.SerializeToString()))
        self._authenticated = True
        self._reader.max_frame = MAX_FRAME_AUTHENTICATED
        self._opened()

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self._reader.feed(data):
                if not self._authenticated:
                    self._challenged(payload)
                    continue
                results = host_pb2.ResultBatch.FromString(payload).results
                share = 0
                if self._streams:  # a result kept from a frame keeps the whole frame's memory: charge it
                    held = sum(isinstance(self._waiters.get(r.id), StreamBuffer) for r in results)
                    share = len(payload) // held if held else 0
                for result in results:
                    self._deliver(result, share)
        except handshake.HandshakeError as exc:
            self._close(f"the process at {self.address} is not the service's host ({exc})")
        except (FrameError, DecodeError, ValueError) as exc:
            self._close(f"its process sent a malformed frame ({str(exc)[:200]})")

    def connection_lost(self, exc) -> None:
        self._close("its process closed the connection" if exc is None else f"the connection failed ({exc})")

    # -- calls ---------------------------------------------------------------------------------
    def _lost(self, why: str) -> Unavailable:
        return Unavailable(f"service '{self.label}' is unavailable: {why}. If it crashed, Solo restarts it; "
                           f"see `solo status {self.label}`")

    def _deliver(self, result: host_pb2.Result, share: int = 0) -> None:
        waiter = self._waiters.get(result.id)
        if waiter is None:
            return
        if isinstance(waiter, StreamBuffer):
            own = len(result.raw) + len(result.json) + len(result.error.message) + len(result.error.exception_type)
            size = max(own, share) + ITEM_OVERHEAD
            if not result.end and len(waiter.items) >= STREAM_ITEMS and waiter.bytes + size > STREAM_BUFFER:
                # its client is not keeping up: end this stream, not the link (a few items of any size are
                # taken: big items are bounded by the link's buffer, which stops reading instead)
                self._cancel(result.id)
                waiter.put(Overloaded(
                    f"the stream from '{self.label}' was ended: its client read more slowly than the service "
                    f"yielded, and {STREAM_BUFFER >> 20} MiB of results were waiting. Read the stream faster, or "
                    "have the service yield less at a time"), 0)
                return
            waiter.put(result, size)
            self._hold(size)
            if result.end:
                self._waiters.pop(result.id, None)
        else:
            self._waiters.pop(result.id, None)
            if not waiter.done():
                waiter.set_result(result)
        if self._retiring and not self._waiters:
            self._close("the service was stopped or replaced")

    @property
    def connected(self) -> bool:
        """Whether the connection ever opened and authenticated (calls on one that never did were never sent)."""
        return self._authenticated

    def retire(self) -> None:
        """No new calls will come (the route moved away); close once the in-flight ones finish."""
        self._retiring = True
        if not self._waiters:
            self._close("the service was stopped or replaced")

    def _close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = why
        if self._pause_timer is not None:
            self._pause_timer.cancel()
        self._budget.paused.get(self.tenant, set()).discard(self)
        error = self._lost(why)
        for waiter in self._waiters.values():
            if isinstance(waiter, StreamBuffer):
                waiter.put(error, 0)
            elif not waiter.done():
                waiter.set_exception(error)
        self._waiters.clear()
        if not self._connected.done():
            self._connected.set_result(None)
        if self._transport is not None:
            self._transport.close()

    def _send(self, call: host_pb2.Call) -> None:
        if self.closed:
            raise self._lost(self.closed)
        self._pending.append(call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._authenticated or self._transport is None or not self._pending or self.closed:
            return  # _opened flushes what queued up while connecting
        batch, self._pending = self._pending, []
        self._transport.write(frame(host_pb2.CallBatch(calls=batch).SerializeToString()))
        unsent = self._transport.get_write_buffer_size()
        if unsent > MAX_UNSENT:
            self._close(f"its process stopped reading calls ({unsent >> 20} MiB were waiting to be sent)")

    def _hold(self, size: int) -> None:
        """Stream results of `size` bytes wait for their consumers: past LINK_BUFFER, stop reading the host
        (it then blocks on its writes) until the consumers took half of it."""
        self._buffered += size
        self._budget.add(self.tenant, size)
        over = self._buffered > LINK_BUFFER or self._budget.over(self.tenant)
        if over and not self._paused and self._transport is not None:
            self._paused = True
            self._pause_timer = asyncio.get_running_loop().call_later(PAUSE_LIMIT, self._unstick)
            self._transport.pause_reading()
        if self._paused:
            self._budget.paused.setdefault(self.tenant, set()).add(self)

    def _taken(self, size: int) -> None:
        if not size:
            return
        self._buffered -= size
        self._budget.add(self.tenant, -size)
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        if self._paused and self._buffered <= LINK_BUFFER // 2 and self._budget.low(self.tenant):
            self._paused = False
            self._pause_timer.cancel()
            self._budget.paused.get(self.tenant, set()).discard(self)
            if not self.closed:
                self._transport.resume_reading()
        elif self._paused:
            self._budget.paused.setdefault(self.tenant, set()).add(self)

    def _unstick(self) -> None:
        """The link stayed paused for PAUSE_LIMIT: its consumers are not reading. End the streams holding the
        most (RESOURCE_EXHAUSTED) until it can read again, so one slow client cannot hold every other call
        to the service, a grantee's included."""
        while self._paused and not self.closed:
            streams = [(w.bytes, i) for i, w in self._waiters.items() if isinstance(w, StreamBuffer) and w.bytes]
            if not streams:
                return
            _, call_id = max(streams)
            stream = self._waiters[call_id]
            held, stream.bytes = stream.bytes, 0
            stream.items.clear()
            self._cancel(call_id)
            stream.put(Overloaded(
                f"the stream from '{self.label}' was ended: its client did not read for {PAUSE_LIMIT:g} s while "
                "results waited, holding up other calls to the service. Read the stream faster"), 0)
            self._taken(held)

    def _cancel(self, call_id: int) -> None:
        if self._waiters.pop(call_id, None) is None:
            return
        if not self.closed:
            self._send(host_pb2.Call(id=call_id, cancel=True))
            if self._retiring and not self._waiters:
                self._close("the service was stopped or replaced")

    async def call(self, method: str, json_text: str | None, raw: bytes | None, timeout: float | None):
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiters[call_id] = future
        self._send(_make_call(call_id, method, json_text, raw, timeout, stream=False))
        try:
            result = await asyncio.wait_for(future, timeout) if timeout else await future
        except TimeoutError:
            self._cancel(call_id)
            raise DeadlineExceeded(f"{self.label}.{method} did not answer within the deadline ({timeout:.3g}s); "
                                   "raise the client deadline or make the call faster") from None
        except asyncio.CancelledError:
            self._cancel(call_id)
            raise
        return _unwrap(result)

    async def stream(self, method: str, json_text: str | None, raw: bytes | None,
                     timeout: float | None) -> AsyncIterator[host_pb2.Result]:
        call_id = next(self._ids)
        results = StreamBuffer()
        self._waiters[call_id] = results
        self._streams += 1
        self._send(_make_call(call_id, method, json_text, raw, timeout, stream=True))
        finished = False
        try:
            while True:
                item, size = await results.get()
                self._taken(size)
                if isinstance(item, Exception):
                    raise item
                item = _unwrap(item)
                if item.end:
                    finished = True
                    return
                yield item
        finally:
            self._streams -= 1
            self._taken(results.bytes)  # what its consumer left unread
            results.items.clear()
            if not finished:
                self._cancel(call_id)

    async def aclose(self) -> None:
        self._close("the gateway closed the link")


def _left(deadline: float | None, loop) -> float | None:
    """Seconds left until `deadline` (loop time), at least a millisecond; None without one."""
    return None if deadline is None else max(0.001, deadline - loop.time())


def _make_call(call_id, method, json_text, raw, timeout, stream) -> host_pb2.Call:
    call = host_pb2.Call(id=call_id, method=method, timeout=timeout or 0.0, stream=stream)
    if raw is not None:
        call.raw = raw
    elif json_text is not None:
        call.json = json_text
    return call


def _unwrap(result: host_pb2.Result) -> host_pb2.Result:
    if result.HasField("error"):
        error = result.error
        raise service_error(error.code, error.message[:MAX_ERROR_TEXT], error.exception_type[:200])
    return result


class Dispatcher:
    """Resolves (tenant, service) through the local route table and forwards the call."""

    def __init__(self, routes: RouteTable, moved_wait: float = MOVED_WAIT, tls: NodeTls | None = None):
        self.routes = routes
        self.tls = tls
        self.moved_wait = moved_wait  # at least as long as a swap may drain, so a re-sent call outlasts it
        self._links: dict[str, HostLink] = {}
        self._budget = TenantBudget()  # stream results waiting, per owning tenant, over all its links
        self._updated: asyncio.Event | None = None

    def route(self, tenant: str, service: str) -> Route:
        route = self.routes.get(tenant, service)
        if route is None:
            raise NotFound(f"service {service!r} not found; deploy it first or check the name with `solo ls`")
        if route.state != "RUNNING" or not route.address:
            why = _STATE_MESSAGES.get(route.state, f"is {route.state}")
            detail = f" ({route.message})" if route.message else ""
            raise Unavailable(f"service {service!r} {why}{detail}")
        return route

    def link(self, route: Route) -> HostLink:
        link = self._links.get(route.address)
        if link is None or link.closed:
            link = HostLink(route, budget=self._budget, tls=self.tls)
            self._links[route.address] = link
        return link

    async def invoke(self, tenant: str, service: str, method: str, json_text: str | None, raw: bytes | None,
                     timeout: float | None) -> host_pb2.Result:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        give_up = loop.time() + self.moved_wait
        for attempt in itertools.count():
            route = self.route(tenant, service)
            try:
                return await self.link(route).call(method, json_text, raw, _left(deadline, loop))
            except Unavailable as exc:
                if exc.exception_type != MOVED or \
                        not await self._moved(tenant, service, route, deadline, give_up, attempt):
                    raise

    async def stream(self, tenant: str, service: str, method: str, json_text: str | None, raw: bytes | None,
                     timeout: float | None) -> AsyncIterator[host_pb2.Result]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        give_up = loop.time() + self.moved_wait
        for attempt in itertools.count():
            route = self.route(tenant, service)
            started = False
            try:
                async for item in self.link(route).stream(method, json_text, raw, _left(deadline, loop)):
                    started = True
                    yield item
                return
            except Unavailable as exc:
                if started or exc.exception_type != MOVED or \
                        not await self._moved(tenant, service, route, deadline, give_up, attempt):
                    raise

    async def _moved(self, tenant: str, service: str, route: Route, deadline: float | None, give_up: float,
                     attempt: int = 0) -> bool:
        """The host answered MOVED (frozen for a hot swap; the call did not run there). Wait until the
        route points elsewhere, a route update arrives, or a poll interval passes (MOVED_POLL, doubling
        per re-send up to MOVED_POLL_MAX); then True: re-send. False once the call's deadline or
        MOVED_WAIT is reached."""
        loop = asyncio.get_running_loop()
        until = min(give_up, deadline) if deadline is not None else give_up
        if loop.time() >= until:
            return False
        now = self.routes.get(tenant, service)
        if now is not None and now.address == route.address and now.state == route.state:
            if self._updated is None:
                self._updated = asyncio.Event()
            try:
                poll = min(MOVED_POLL * 2 ** min(attempt, 10), MOVED_POLL_MAX)
                await asyncio.wait_for(self._updated.wait(), min(poll, until - loop.time()))
            except TimeoutError:
                pass
        return loop.time() < until

    def prune(self) -> None:
        """After a route update: wake calls waiting for a route to move, and retire links to hosts no
        route points at any more (after stops, restarts, replaces, swaps)."""
        if self._updated is not None:
            self._updated.set()
            self._updated = None
        live = self.routes.addresses()
        for address in [a for a in self._links if a not in live]:
            self._links.pop(address).retire()

    async def close(self) -> None:
        for link in self._links.values():
            await link.aclose()
        self._links.clear()
