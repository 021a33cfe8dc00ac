"""The wire between a host and its cell: control requests both ways, and sockets handed to the cell.

Two Unix socket pairs join them. `ctl` (a stream) carries messages: a 4-byte length, a 4-byte
header length, a JSON header, then a body of raw bytes (source, snapshots), so large payloads are
never JSON-escaped. Either side may send a request (`{"id", "op", ...}`) and answers it with
`{"re": id, ...}` or `{"re": id, "error": {code, message, exception_type}}`. `fds` (a seqpacket
socket) carries sockets from the host to the cell (SCM_RIGHTS), one per message, each with a
small JSON header naming what it is. The host never takes a descriptor from the cell.

Everything read from a cell is hostile input: sizes are capped before anything is buffered,
headers must be JSON objects, at most `max_incoming` requests from the other side run at once,
and errors carry a bounded message. Pure asyncio; no Ray.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from solo.errors import InvalidRequest, SoloError, Unavailable, from_code, service_error

log = logging.getLogger("solo.cell")

MAX_HEADER = 1 << 20
MAX_MESSAGE = 80 << 20  # a 64 MiB snapshot ([swap] max_state_bytes) plus room
MAX_TEXT = 4096
MAX_UNREAD = 4 << 20  # answers the other side has not read yet; past it, the wire closes  # error messages from the other side are cut here
_LENGTHS = struct.Struct(">II")

Handler = Callable[[str, dict, bytes], Awaitable[tuple[dict, bytes]]]


class WireError(Exception):
    """The other side sent something that is not a message of this wire; the wire closes."""


def encode(header: dict, body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _LENGTHS.pack(len(head) + len(body), len(head)) + head + body


async def read_message(reader: asyncio.StreamReader, max_message: int = MAX_MESSAGE) -> tuple[dict, bytes]:
    total, head_len = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
    if total > max_message or head_len > min(total, MAX_HEADER):
        raise WireError(f"a message of {total} bytes (header {head_len}) is over the wire's limits")
    data = await reader.readexactly(total)
    try:
        header = json.loads(data[:head_len])
    except ValueError as exc:
        raise WireError(f"a header that is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("a header that is not a JSON object")
    return header, data[head_len:]


def error_header(exc: BaseException) -> dict:
    if isinstance(exc, SoloError):
        return {"code": exc.code, "message": exc.message[:MAX_TEXT], "exception_type": exc.exception_type[:200]}
    return {"code": "SERVICE_FAILED", "message": f"{type(exc).__name__}: {exc}"[:MAX_TEXT], "exception_type": ""}


def error_from(header: Any, strict: bool = False) -> SoloError:
    """`strict`: the answer is from a cell (the tenant's code), so only the codes a service may give pass."""
    if not isinstance(header, dict):
        return Unavailable("the service's process answered with a malformed error")
    def text(key: str, cap: int) -> str:
        value = header.get(key, "")
        return value[:cap] if isinstance(value, str) else ""
    make = service_error if strict else from_code
    return make(text("code", 64) or "SERVICE_FAILED", text("message", MAX_TEXT), text("exception_type", 200))


class Wire:
    """One side of the control channel: send requests and await answers; serve the other side's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler,
                 max_incoming: int = 16, max_message: int = MAX_MESSAGE, name: str = "wire"):
        self.reader, self.writer, self.handler = reader, writer, handler
        self.max_message = max_message
        self.name = name
        self.scrub: Callable[[str], str] | None = None  # a host's: the service's secrets out of its error texts
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._incoming = asyncio.Semaphore(max_incoming)
        self._tasks: set[asyncio.Task] = set()
        self.closed: str | None = None
        self.done = asyncio.get_running_loop().create_future()
        self._pump = asyncio.ensure_future(self._read_loop())

    async def request(self, op: str, body: bytes = b"", timeout: float | None = None, **fields: Any) -> tuple[dict, bytes]:
        if self.closed:
            raise Unavailable(f"the service's process is gone ({self.closed})")
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        try:
            self.writer.write(encode({"id": call_id, "op": op, **fields}, body))
            header, answer = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(call_id, None)
        if "error" in header:
            error = error_from(header["error"], strict=self.name == "host")
            if self.scrub is not None:
                error.message = self.scrub(error.message)
                error.args = (error.message,)
            raise error
        return header, answer

    async def _read_loop(self) -> None:
        why = "closed"
        try:
            while True:
                header, body = await read_message(self.reader, self.max_message)
                if "re" in header:
                    future = self._waiting.get(header["re"]) if isinstance(header["re"], int) else None
                    if future is not None and not future.done():
                        future.set_result((header, body))
                elif isinstance(header.get("id"), int) and isinstance(header.get("op"), str):
                    await self._incoming.acquire()  # backpressure: the other side waits for a free slot
                    task = asyncio.ensure_future(self._serve(header, body))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    raise WireError("a message that is neither a request nor an answer")
        except (asyncio.IncompleteReadError, ConnectionError):
            why = "its process closed the control channel"
        except WireError as exc:
            why = f"a malformed control message ({exc})"
        except asyncio.CancelledError:
            why = "closed"
        finally:
            self.close(why)

    async def _serve(self, header: dict, body: bytes) -> None:
        try:
            try:
                fields, answer = await self.handler(header["op"], header, body)
                reply = encode({"re": header["id"], **fields}, answer)
            except (SoloError, Exception) as exc:  # noqa: BLE001 - the other side gets the error, the wire lives
                reply = encode({"re": header["id"], "error": error_header(exc)})
            if not self.closed:
                if self.writer.transport.get_write_buffer_size() > MAX_UNREAD:
                    self.close("the other side does not read its answers")  # it would grow this process
                    return
                self.writer.write(reply)
        finally:
            self._incoming.release()

    def close(self, why: str = "closed") -> None:
        if self.closed:
            return
        self.closed = why
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(Unavailable(f"the service's process is gone ({why})"))
        for task in self._tasks:
            task.cancel()
        self.writer.close()
        if not self.done.done():
            self.done.set_result(why)
        if not self._pump.done() and self._pump is not asyncio.current_task():
            self._pump.cancel()


def reject_unknown(op: str) -> InvalidRequest:
    return InvalidRequest(f"unknown control request {op[:64]!r}")


def read_ready(read: Callable[[], bytes]) -> bytes | None:
    """What a non-blocking `read` has ready: None when nothing yet, b"" at the end (or a broken pipe)."""
    try:
        return read()
    except BlockingIOError:
        return None
    except OSError:
        return b""


# -- sockets handed to the cell ----------------------------------------------------------------------
MAX_FD_HEADER = 4096


def send_socket(channel: socket.socket, header: dict, sock: socket.socket) -> bool:
    """Hand `sock` to the cell (non-blocking; False when the cell is not reading its channel)."""
    try:
        socket.send_fds(channel, [json.dumps(header).encode()], [sock.fileno()])
        return True
    except (BlockingIOError, OSError):
        return False


def receive_sockets(channel: socket.socket, deliver: Callable[[dict, socket.socket], None]) -> None:
    """In the cell: read every socket waiting on `channel` (call from a reader callback)."""
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(channel, MAX_FD_HEADER, 4)
        except BlockingIOError:
            return
        if not data and not fds:
            raise ConnectionError("the host closed the socket channel")
        socks = [socket.socket(fileno=fd) for fd in fds]
        try:
            header = json.loads(data)
        except ValueError:
            header = None
        if not isinstance(header, dict) or len(socks) != 1:
            for s in socks:
                s.close()
            continue
        deliver(header, socks[0])


__all__ = ["MAX_MESSAGE", "Wire", "WireError", "encode", "error_from", "error_header", "read_message",
           "read_ready", "receive_sockets", "reject_unknown", "send_socket"]
