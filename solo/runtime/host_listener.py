"""The host's call port: accept a connection, authenticate it, hand the socket to the cell.

The host (Solo's code, in the Ray worker) listens; the service's code runs in the cell, which has
no network of its own. For each connection the host reads exactly one small Hello (at most
`MAX_HANDSHAKE_FRAME` bytes before any proof), answers a Challenge proving it holds the host key,
reads the client's Auth, and only then passes the socket to the cell (SCM_RIGHTS), which reads
the calls from it directly: calls never pass through the host. A handshake has `HANDSHAKE_SECONDS`
to finish (its first frame `FIRST_FRAME_SECONDS`: a real client sends its Hello at once), at most
`MAX_HANDSHAKES` run at once and at most `MAX_HANDSHAKES_PER_IP` from one source (an IPv4 address, or
an IPv6 /64: one machine commonly holds a whole /64), so one machine that opens connections and stays
silent cannot take every slot; connections beyond that are closed at once.

With `[tls] hosts` (security/node_tls.py) a connection may open with TLS (its first byte says so):
the host completes TLS with its node certificate, requires a node certificate of the other end,
runs the same handshake inside, then relays between the TLS socket and a socket pair whose other
end goes to the cell (TLS cannot be handed over, and the node's key stays out of the cell). A
plaintext connection from where TLS is required is refused. No Ray here.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable

from google.protobuf.message import DecodeError

from solo._proto import host_pb2
from solo.core import handshake
from solo.core.frames import frame
from solo.security.node_tls import NodeTls, node_name
from solo.security.ratelimit import FailureBudget, Rate

log = logging.getLogger("solo.host")

HANDSHAKE_SECONDS = 3.0
FIRST_FRAME_SECONDS = 1.0
MAX_HANDSHAKES = 32
MAX_HANDSHAKES_PER_IP = 8
_LENGTH = struct.Struct(">I")
TLS_RECORD = 0x16  # the first byte of a TLS ClientHello; a plaintext Hello starts with its length (< 512)
RELAY_CHUNK = 64 * 1024  # a relay reads this much at a time and lets each writer hold as much before it waits
MAX_RELAYS = 128  # TLS connections one host relays at once: each holds ~0.3 MiB, up to ~1.5 MiB when both ends flood it
RELAY_CLOSE_SECONDS = 1.0  # when one end closed, how long the other may take to be sent what is left
# refused handshakes a source may cause (a TLS handshake costs the host ~1 ms of CPU); past it and the burst
# its connections are closed at once, before any TLS, until the budget refills
FAILURES_PER_SECOND, FAILURES_BURST = 20.0, 100.0
_relays: set[asyncio.Task] = set()  # TLS connections being relayed to and from this process's cell

Handoff = Callable[[socket.socket, float], bool]  # (authenticated socket, ticket expiry or 0) -> taken


def source_of(ip: str) -> str:
    """The source a connection from `ip` counts against for MAX_HANDSHAKES_PER_IP: an IPv4 address itself (an
    IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address as its /64 (one host is usually given a whole
    /64, so counting exact addresses would let it open 8 handshakes per address of it)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


Read = Callable[[int], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]


def _socket_io(loop, sock: socket.socket) -> tuple[Read, Send]:
    async def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            if not chunk:
                raise ConnectionError("closed during the handshake")
            data += chunk
        return data

    return exactly, lambda data: loop.sock_sendall(sock, data)


def _stream_io(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[Read, Send]:
    async def exactly(n: int) -> bytes:
        try:
            return await reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise ConnectionError("closed during the handshake") from None

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    return exactly, send


async def _read_frame(read: Read) -> bytes:
    (size,) = _LENGTH.unpack(await read(4))
    if size > handshake.MAX_HANDSHAKE_FRAME:
        raise handshake.HandshakeError(f"a first frame of {size} bytes; a handshake frame is at most "
                                       f"{handshake.MAX_HANDSHAKE_FRAME}")
    return await read(size)


async def _host_side(read: Read, send: Send, key: str) -> float:
    hello = host_pb2.Hello.FromString(await asyncio.wait_for(_read_frame(read), FIRST_FRAME_SECONDS))
    secret, expires = handshake.secret_for(key, hello.identity, time.time())
    if len(hello.nonce) != handshake.NONCE_BYTES:
        raise handshake.HandshakeError("a Hello without a nonce")
    host_nonce = handshake.nonce()
    challenge = host_pb2.Challenge(nonce=host_nonce, proof=handshake.proof(secret, "host", hello.nonce, host_nonce))
    await send(frame(challenge.SerializeToString()))
    auth = host_pb2.Auth.FromString(await _read_frame(read))
    handshake.check(secret, "client", hello.nonce, host_nonce, auth.proof)
    return expires


async def _client_side(read: Read, send: Send, credential: str) -> None:
    client_nonce = handshake.nonce()
    hello = host_pb2.Hello(identity=handshake.identity_of(credential), nonce=client_nonce)
    await send(frame(hello.SerializeToString()))
    challenge = host_pb2.Challenge.FromString(await _read_frame(read))
    handshake.check(credential, "host", client_nonce, challenge.nonce, challenge.proof)
    auth = host_pb2.Auth(proof=handshake.proof(credential, "client", client_nonce, challenge.nonce))
    await send(frame(auth.SerializeToString()))


async def authenticate(loop, sock: socket.socket, key: str) -> float:
    """Run the host's side of the handshake on a plaintext `sock`; the peer ticket's expiry (0.0 for a gateway)."""
    return await _host_side(*_socket_io(loop, sock), key)


async def _first_byte(loop, sock: socket.socket) -> int:
    """The connection's first byte, left unread (MSG_PEEK)."""
    while True:
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            readable = loop.create_future()
            loop.add_reader(sock.fileno(), lambda done=readable: done.done() or done.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(sock.fileno())
            continue
        if not data:
            raise ConnectionError("closed before the handshake")
        return data[0]


async def _tls_streams(loop, tls: NodeTls, sock: socket.socket | None = None, host: str = "", port: int = 0):
    """TLS with node certificates on both ends: as the server on an accepted `sock`, else as a client to
    host:port. Returns (reader, writer) once the other end proved a node certificate."""
    reader = asyncio.StreamReader(limit=RELAY_CHUNK, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    if sock is not None:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock, ssl=tls.server,
                                                          ssl_handshake_timeout=HANDSHAKE_SECONDS)
    else:
        transport, _ = await loop.create_connection(lambda: protocol, host, port, ssl=tls.client,
                                                    server_hostname=host, ssl_handshake_timeout=HANDSHAKE_SECONDS)
    transport.set_write_buffer_limits(high=RELAY_CHUNK)
    transport.set_read_buffer_limits(high=RELAY_CHUNK)  # decrypted bytes waiting (asyncio's default: 256 KiB)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    try:
        node_name(transport.get_extra_info("ssl_object"))
    except handshake.HandshakeError:
        transport.abort()
        raise
    return reader, writer


def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> socket.socket:
    """Relay between a TLS connection and a new socket pair; the pair's other end is returned, for the cell.
    Each direction reads at most RELAY_CHUNK and waits for its writer to be below RELAY_CHUNK (drain), so a
    relay holds about 0.3 MiB, 1.5 MiB at most whatever either end does (measured); when either end
    closes, what the other is owed is sent (up to RELAY_CLOSE_SECONDS) and both are closed. At most MAX_RELAYS
    at once per process (Unavailable past it)."""
    if len(_relays) >= MAX_RELAYS:
        writer.transport.abort()
        raise ConnectionError(f"this host already relays {MAX_RELAYS} TLS connections")
    ours, theirs = socket.socketpair()
    ours.setblocking(False)

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(RELAY_CHUNK):
            sink.write(data)
            await sink.drain()

    async def end(sink: asyncio.StreamWriter) -> None:
        sink.close()  # sends what is buffered first
        try:
            await asyncio.wait_for(sink.wait_closed(), RELAY_CLOSE_SECONDS)
        except Exception:  # noqa: BLE001 - a peer that does not take it, a reset: the end is the same
            sink.transport.abort()

    async def run() -> None:
        local_writer = None
        directions: list[asyncio.Task] = []
        try:
            local_reader, local_writer = await asyncio.open_connection(sock=ours, limit=RELAY_CHUNK)
            local_writer.transport.set_write_buffer_limits(high=RELAY_CHUNK)
            directions = [asyncio.ensure_future(pump(reader, local_writer)),
                          asyncio.ensure_future(pump(local_reader, writer))]
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in directions:
                task.cancel()
            await asyncio.gather(*directions, return_exceptions=True)  # a reset connection is an ordinary end
            ends = [end(w) for w in (local_writer, writer) if w is not None]
            await asyncio.shield(asyncio.gather(*ends, return_exceptions=True))
            ours.close()  # if the relay ended before the pair was opened

    task = asyncio.ensure_future(run())
    _relays.add(task)
    task.add_done_callback(_relays.discard)
    return theirs


def relays() -> int:
    """TLS connections this process relays now."""
    return len(_relays)


def end_relays() -> None:
    for task in list(_relays):
        task.cancel()


async def connect_authenticated(address: str, credential: str, timeout: float = 5.0,
                                tls: NodeTls | None = None) -> socket.socket:
    """The client's side, for a host connecting on its cell's behalf (solo.discover): a connected socket on
    which the handshake with `credential` (a peer ticket) is done, ready to carry calls. Where `tls`
    requires it for `address`, the connection is TLS and the socket returned is a relayed socket pair's end."""
    loop = asyncio.get_running_loop()
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    secure = tls is not None and tls.required(host)
    sock = None if secure else socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    writer = None

    async def run() -> socket.socket:
        nonlocal writer
        if secure:
            reader, writer = await _tls_streams(loop, tls, host=host, port=int(port))
            await _client_side(*_stream_io(reader, writer), credential)
            return _relay(reader, writer)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, (host, int(port)))
        await _client_side(*_socket_io(loop, sock), credential)
        return sock

    try:
        return await asyncio.wait_for(run(), timeout)
    except (TimeoutError, OSError, ConnectionError, handshake.HandshakeError, DecodeError, ValueError) as exc:
        if sock is not None:
            sock.close()
        if writer is not None:
            writer.transport.abort()
        from solo.errors import Unavailable

        raise Unavailable(f"could not open a connection to the service at {address}: {exc or type(exc).__name__}; "
                          "retry in a moment") from None


class HostListener:
    def __init__(self, key: str, handoff: Handoff, tls: NodeTls | None = None):
        self.key = key
        self.handoff = handoff
        self.tls = tls
        self.handshakes = 0
        self.by_ip: dict[str, int] = {}  # handshakes in progress per source (source_of: an IPv4 address, an IPv6 /64)
        self.refused = 0
        self.failures = FailureBudget(Rate(FAILURES_PER_SECOND, FAILURES_BURST))  # refused handshakes per source
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task | None = None

    async def start(self, bind_host: str) -> int:
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind_host, 0))
        sock.listen(512)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.ensure_future(self._accept_loop())
        return sock.getsockname()[1]

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # out of descriptors and the like: back off, keep listening
                log.warning("accepting a call connection failed: %s", exc)
                await asyncio.sleep(0.05)
                continue
            ip = source_of(address[0])
            if (self.handshakes >= MAX_HANDSHAKES or self.by_ip.get(ip, 0) >= MAX_HANDSHAKES_PER_IP
                    or self.failures.exhausted(ip)):
                self.refused += 1
                conn.close()
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.handshakes += 1
            self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
            asyncio.ensure_future(self._admit(loop, conn, ip, address[0]))

    async def _admit(self, loop, conn: socket.socket, ip: str, peer: str) -> None:
        try:
            await asyncio.wait_for(self._admit_one(loop, conn, peer), HANDSHAKE_SECONDS)
        except (TimeoutError, ConnectionError, OSError, handshake.HandshakeError, DecodeError, ValueError) as exc:
            self.refused += 1
            self.failures.refused(ip)
            log.info("refused a call connection: %s", exc or type(exc).__name__)
        finally:
            self.handshakes -= 1
            left = self.by_ip.pop(ip) - 1
            if left:
                self.by_ip[ip] = left
            conn.close()  # the cell holds its own copy of a socket it took; a TLS transport holds a duplicate

    async def _admit_one(self, loop, conn: socket.socket, peer: str) -> None:
        first = await asyncio.wait_for(_first_byte(loop, conn), FIRST_FRAME_SECONDS)
        if first != TLS_RECORD:
            if self.tls is not None and self.tls.required(peer):
                raise handshake.HandshakeError(f"a plaintext connection from {peer}, where [tls] hosts = "
                                               f"{self.tls.mode!r} asks for TLS")
            if not self.handoff(conn, await authenticate(loop, conn, self.key)):
                self.refused += 1
            return
        if self.tls is None:
            raise handshake.HandshakeError("a TLS connection to a host without [tls] hosts")
        duplicate = conn.dup()  # the TLS transport owns this one; the listener closes `conn` as always
        writer = None
        try:
            reader, writer = await _tls_streams(loop, self.tls, sock=duplicate)
            expires = await _host_side(*_stream_io(reader, writer), self.key)
        except BaseException:
            if writer is not None:
                writer.transport.abort()
            duplicate.close()
            raise
        theirs = _relay(reader, writer)
        try:
            if not self.handoff(theirs, expires):
                self.refused += 1
        finally:
            theirs.close()  # the cell holds its own copy; closing a refused one ends the relay

    async def settle(self, timeout: float) -> None:
        """Wait (up to `timeout`) for the handshakes already under way: a connection a gateway opened before a
        stop still reaches the cell, so the calls it carries are drained, not cut."""
        deadline = time.monotonic() + timeout
        while self.handshakes and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        """Stop accepting; connections already handed over (and their relays) stay until the cell ends them."""
        if self._accepting is not None:
            self._accepting.cancel()
        if self._sock is not None:
            self._sock.close()


__all__ = ["FIRST_FRAME_SECONDS", "HANDSHAKE_SECONDS", "HostListener", "MAX_HANDSHAKES", "MAX_HANDSHAKES_PER_IP",
           "MAX_RELAYS", "authenticate", "connect_authenticated", "end_relays", "relays", "source_of"]
