"""The host's call port: accept a connection, authenticate it, hand the socket to the cell.

The host (Solo's code, in the Ray worker) listens; the service's code runs in the cell, which has
no network of its own. For each connection the host reads exactly one small Hello (at most
`MAX_HANDSHAKE_FRAME` bytes before any proof), answers a Challenge proving it holds the host key,
reads the client's Auth, and only then passes the socket to the cell (SCM_RIGHTS), which reads
the calls from it directly: calls never pass through the host. A handshake has `HANDSHAKE_SECONDS`
to finish (its first frame `FIRST_FRAME_SECONDS`: a real client sends its Hello at once), at most
`MAX_HANDSHAKES` run at once and at most `MAX_HANDSHAKES_PER_IP` from one source (an IPv4 address, or
an IPv6 /64: one machine commonly holds a whole /64), so one machine that opens connections and stays
silent cannot take every slot; connections beyond that are closed at once. No Ray here.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable

from google.protobuf.message import DecodeError

from solo._proto import host_pb2
from solo.core import handshake
from solo.core.frames import frame

log = logging.getLogger("solo.host")

HANDSHAKE_SECONDS = 3.0
FIRST_FRAME_SECONDS = 1.0
MAX_HANDSHAKES = 32
MAX_HANDSHAKES_PER_IP = 8
_LENGTH = struct.Struct(">I")

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


async def _read_frame(loop, sock: socket.socket) -> bytes:
    async def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            if not chunk:
                raise ConnectionError("closed during the handshake")
            data += chunk
        return data

    (size,) = _LENGTH.unpack(await exactly(4))
    if size > handshake.MAX_HANDSHAKE_FRAME:
        raise handshake.HandshakeError(f"a first frame of {size} bytes; a handshake frame is at most "
                                       f"{handshake.MAX_HANDSHAKE_FRAME}")
    return await exactly(size)


async def authenticate(loop, sock: socket.socket, key: str) -> float:
    """Run the host's side of the handshake on `sock`; the peer ticket's expiry (0.0 for a gateway)."""
    hello = host_pb2.Hello.FromString(await asyncio.wait_for(_read_frame(loop, sock), FIRST_FRAME_SECONDS))
    secret, expires = handshake.secret_for(key, hello.identity, time.time())
    if len(hello.nonce) != handshake.NONCE_BYTES:
        raise handshake.HandshakeError("a Hello without a nonce")
    host_nonce = handshake.nonce()
    challenge = host_pb2.Challenge(nonce=host_nonce, proof=handshake.proof(secret, "host", hello.nonce, host_nonce))
    await loop.sock_sendall(sock, frame(challenge.SerializeToString()))
    auth = host_pb2.Auth.FromString(await _read_frame(loop, sock))
    handshake.check(secret, "client", hello.nonce, host_nonce, auth.proof)
    return expires


async def connect_authenticated(address: str, credential: str, timeout: float = 5.0) -> socket.socket:
    """The client's side, for a host connecting on its cell's behalf (solo.discover): a connected socket on
    which the handshake with `credential` (a peer ticket) is done, ready to carry calls."""
    loop = asyncio.get_running_loop()
    host, _, port = address.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def run() -> None:
        await loop.sock_connect(sock, (host.strip("[]"), int(port)))
        client_nonce = handshake.nonce()
        hello = host_pb2.Hello(identity=handshake.identity_of(credential), nonce=client_nonce)
        await loop.sock_sendall(sock, frame(hello.SerializeToString()))
        challenge = host_pb2.Challenge.FromString(await _read_frame(loop, sock))
        handshake.check(credential, "host", client_nonce, challenge.nonce, challenge.proof)
        auth = host_pb2.Auth(proof=handshake.proof(credential, "client", client_nonce, challenge.nonce))
        await loop.sock_sendall(sock, frame(auth.SerializeToString()))

    try:
        await asyncio.wait_for(run(), timeout)
    except (TimeoutError, OSError, ConnectionError, handshake.HandshakeError, DecodeError) as exc:
        sock.close()
        from solo.errors import Unavailable

        raise Unavailable(f"could not open a connection to the service at {address}: {exc or type(exc).__name__}; "
                          "retry in a moment") from None
    return sock


class HostListener:
    def __init__(self, key: str, handoff: Handoff):
        self.key = key
        self.handoff = handoff
        self.handshakes = 0
        self.by_ip: dict[str, int] = {}  # handshakes in progress per source (source_of: an IPv4 address, an IPv6 /64)
        self.refused = 0
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
            if self.handshakes >= MAX_HANDSHAKES or self.by_ip.get(ip, 0) >= MAX_HANDSHAKES_PER_IP:
                self.refused += 1
                conn.close()
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.handshakes += 1
            self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
            asyncio.ensure_future(self._admit(loop, conn, ip))

    async def _admit(self, loop, conn: socket.socket, ip: str) -> None:
        try:
            expires = await asyncio.wait_for(authenticate(loop, conn, self.key), HANDSHAKE_SECONDS)
            if not self.handoff(conn, expires):
                self.refused += 1
        except (TimeoutError, ConnectionError, OSError, handshake.HandshakeError, DecodeError, ValueError) as exc:
            self.refused += 1
            log.info("refused a call connection: %s", exc or type(exc).__name__)
        finally:
            self.handshakes -= 1
            left = self.by_ip.pop(ip) - 1
            if left:
                self.by_ip[ip] = left
            conn.close()  # the cell holds its own copy of a socket it took

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        if self._sock is not None:
            self._sock.close()


__all__ = ["FIRST_FRAME_SECONDS", "HANDSHAKE_SECONDS", "HostListener", "MAX_HANDSHAKES", "MAX_HANDSHAKES_PER_IP",
           "authenticate", "connect_authenticated", "source_of"]
