"""The host side of the call channel: a small asyncio TCP server inside the service's process.

Ray owns placement and lifecycle of the host; a gateway opens one connection, proves it knows the
host's key (Hello), then sends CallBatch frames and receives ResultBatch frames. Results that are
ready in the same event-loop turn leave together in one frame.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

from solo._proto import host_pb2
from solo.core.frames import FrameError, FrameReader, frame
from solo.core.payload import decode_args, encode_result
from solo.errors import MOVED, SoloError, Unavailable

log = logging.getLogger("solo.host")


def error_result(call_id: int, exc: SoloError) -> host_pb2.Result:
    return host_pb2.Result(id=call_id, end=True, error=host_pb2.Error(
        code=exc.code, message=exc.message, exception_type=exc.exception_type))


def value_result(call_id: int, value: Any, end: bool) -> host_pb2.Result:
    json_text, raw = encode_result(value)
    if raw is not None:
        return host_pb2.Result(id=call_id, raw=raw, end=end)
    return host_pb2.Result(id=call_id, json=json_text, end=end)


class HostChannel:
    """What the host serves: the key gateways must present, and the loaded service instance."""

    def __init__(self, key: str):
        self.key = key
        self.instance = None  # set by the host once the service is loaded
        self.moved = False  # frozen for a hot swap: new calls are answered MOVED and run nowhere here


PEER_TICKET_SECONDS = 30.0  # how long a ticket for a direct call (solo.discover) lets a connection in


def peer_ticket(host_key: str, tenant: str, expires: float) -> str:
    """What a peer presents instead of the host key: the calling tenant, an expiry and an HMAC under the
    host key, so the key itself never leaves the registry and the gateways, and a ticket ends."""
    body = f"{tenant}:{int(expires)}"
    mac = hmac.new(host_key.encode(), f"peer:{body}".encode(), hashlib.sha256).hexdigest()
    return f"peer:{body}:{mac}"


def check_hello(host_key: str, presented: str, now: float) -> float:
    """0.0 for the host key (a gateway); a peer ticket's expiry; FrameError for anything else."""
    if hmac.compare_digest(presented, host_key):
        return 0.0
    parts = presented.split(":")
    if len(parts) == 4 and parts[0] == "peer" and parts[2].isdigit():
        expires = float(parts[2])
        if hmac.compare_digest(presented, peer_ticket(host_key, parts[1], expires)) and now < expires:
            return expires
    raise FrameError("wrong host key or expired ticket")


def moved_error() -> Unavailable:
    return Unavailable("the service is being swapped to another version; the call was not run and is re-sent "
                       "to the new version", exception_type=MOVED)


class CallProtocol(asyncio.Protocol):
    """One gateway connection."""

    def __init__(self, channel: HostChannel):
        self.channel = channel
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.authorized = False
        self.expires = 0.0  # a peer connection's ticket expiry (0: a gateway, no expiry)
        self.tasks: dict[int, asyncio.Task] = {}
        self.outgoing: list[host_pb2.Result] = []
        self.flush_scheduled = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self.reader.feed(data):
                if not self.authorized:
                    hello = host_pb2.Hello.FromString(payload)
                    self.expires = check_hello(self.channel.key, hello.key, time.time())
                    self.authorized = True
                    continue
                expired = self.expires and time.time() >= self.expires
                for call in host_pb2.CallBatch.FromString(payload).calls:
                    if call.cancel:
                        task = self.tasks.get(call.id)
                        if task is not None:
                            task.cancel()
                    elif expired:  # not run: the peer resolves again (a fresh ticket) and re-sends it
                        self.send(error_result(call.id, Unavailable(
                            "this connection's ticket expired; the call was not run", exception_type=MOVED)))
                    else:
                        self.tasks[call.id] = asyncio.ensure_future(self.run(call))
        except Exception as exc:  # noqa: BLE001 - a bad peer loses its connection, nothing else
            log.warning("closing a call connection: %s", exc)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        for task in list(self.tasks.values()):
            task.cancel()

    def send(self, result: host_pb2.Result) -> None:
        self.outgoing.append(result)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        results, self.outgoing = self.outgoing, []
        if results and not self.transport.is_closing():
            self.transport.write(frame(host_pb2.ResultBatch(results=results).SerializeToString()))

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


async def start_host_server(channel: HostChannel, bind_host: str) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CallProtocol(channel), bind_host, 0)
    return server, server.sockets[0].getsockname()[1]
