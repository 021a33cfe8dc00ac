"""Forwarding calls from the gateway to service hosts.

One `HostLink` per host: a persistent gRPC channel and one bidirectional stream that carries many
calls per message. Calls queued while the previous message is being written go out together in
the next one, so coalescing adapts to load and never waits when there is nothing to coalesce.
"""
from __future__ import annotations

import asyncio
import itertools
from typing import Any, AsyncIterator

import grpc

from solo._proto import host_pb2, host_pb2_grpc
from solo.core.routes import Route, RouteTable
from solo.errors import DeadlineExceeded, NotFound, Unavailable, from_code

KEY_HEADER = "solo-host-key"
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
]
_STATE_MESSAGES = {
    "STARTING": "is starting; retry in a moment",
    "STOPPING": "is stopping",
    "RESTARTING": "crashed and is restarting; retry in a moment",
    "STOPPED": "is stopped; deploy it again to call it",
    "FAILED": "has failed",
}


class HostLink:
    def __init__(self, route: Route, service_label: str):
        self.address = route.address
        self.label = service_label
        self._channel = grpc.aio.insecure_channel(route.address, options=CHANNEL_OPTIONS)
        self._stream = host_pb2_grpc.HostStub(self._channel).Calls(metadata=((KEY_HEADER, route.key),))
        self._ids = itertools.count(1)
        self._pending: list[host_pb2.Call] = []
        self._wake = asyncio.Event()
        self._waiters: dict[int, asyncio.Future | asyncio.Queue] = {}
        self.closed: str | None = None
        self._retiring = False
        self._tasks = [asyncio.create_task(self._write_loop()), asyncio.create_task(self._read_loop())]

    def _lost(self, why: str) -> Unavailable:
        return Unavailable(f"service '{self.label}' is unavailable: {why}. If it crashed, Solo restarts it; "
                           f"see `solo status {self.label}`")

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                await asyncio.sleep(0)  # one loop turn: calls already runnable join this batch (no timed wait)
                self._wake.clear()
                batch, self._pending = self._pending, []
                await self._stream.write(host_pb2.CallBatch(calls=batch))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            self._close(f"the connection to its process failed ({_describe(exc)})")
        except asyncio.CancelledError:
            pass

    async def _read_loop(self) -> None:
        try:
            while True:
                batch = await self._stream.read()
                if batch is grpc.aio.EOF:
                    self._close("its process closed the connection")
                    return
                for result in batch.results:
                    self._deliver(result)
        except grpc.aio.AioRpcError as exc:
            self._close(f"the connection to its process failed ({_describe(exc)})")
        except asyncio.CancelledError:
            pass

    def _deliver(self, result: host_pb2.Result) -> None:
        waiter = self._waiters.get(result.id)
        if waiter is None:
            return
        if isinstance(waiter, asyncio.Queue):
            waiter.put_nowait(result)
            if result.end:
                self._waiters.pop(result.id, None)
        else:
            self._waiters.pop(result.id, None)
            if not waiter.done():
                waiter.set_result(result)
        if self._retiring and not self._waiters:
            self._close("the service was stopped or replaced")

    def retire(self) -> None:
        """No new calls will come (the route moved away); close once the in-flight ones finish."""
        self._retiring = True
        if not self._waiters:
            self._close("the service was stopped or replaced")

    def _close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = why
        error = self._lost(why)
        for waiter in self._waiters.values():
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait(error)
            elif not waiter.done():
                waiter.set_exception(error)
        self._waiters.clear()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._stream.cancel()
        asyncio.ensure_future(self._channel.close())

    def _send(self, call: host_pb2.Call) -> None:
        if self.closed:
            raise self._lost(self.closed)
        self._pending.append(call)
        self._wake.set()

    def _cancel(self, call_id: int) -> None:
        self._waiters.pop(call_id, None)
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
        except asyncio.TimeoutError:
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
        queue: asyncio.Queue = asyncio.Queue()
        self._waiters[call_id] = queue
        self._send(_make_call(call_id, method, json_text, raw, timeout, stream=True))
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                item = _unwrap(item)
                if item.end:
                    finished = True
                    return
                yield item
        finally:
            if not finished:
                self._cancel(call_id)

    async def aclose(self) -> None:
        self._close("the gateway closed the link")


def _make_call(call_id, method, json_text, raw, timeout, stream) -> host_pb2.Call:
    call = host_pb2.Call(id=call_id, method=method, timeout=timeout or 0.0, stream=stream)
    if raw is not None:
        call.raw = raw
    elif json_text is not None:
        call.json = json_text
    return call


def _unwrap(result: host_pb2.Result) -> host_pb2.Result:
    if result.HasField("error"):
        raise from_code(result.error.code, result.error.message, result.error.exception_type)
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return type(exc).__name__


class Dispatcher:
    """Resolves (tenant, service) through the local route table and forwards the call."""

    def __init__(self, routes: RouteTable):
        self.routes = routes
        self._links: dict[str, HostLink] = {}

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
            link = HostLink(route, route.name)
            self._links[route.address] = link
        return link

    async def invoke(self, tenant: str, service: str, method: str, json_text: str | None, raw: bytes | None,
                     timeout: float | None) -> host_pb2.Result:
        route = self.route(tenant, service)
        return await self.link(route).call(method, json_text, raw, timeout)

    def stream(self, tenant: str, service: str, method: str, json_text: str | None, raw: bytes | None,
               timeout: float | None) -> AsyncIterator[host_pb2.Result]:
        route = self.route(tenant, service)
        return self.link(route).stream(method, json_text, raw, timeout)

    def prune(self) -> None:
        """Retire links to hosts no route points at any more (after stops, restarts, replaces)."""
        live = self.routes.addresses()
        for address in [a for a in self._links if a not in live]:
            self._links.pop(address).retire()

    async def close(self) -> None:
        for link in self._links.values():
            await link.aclose()
        self._links.clear()
