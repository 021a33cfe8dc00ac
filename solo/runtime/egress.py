"""Egress from a cell: the only way a service's code reaches the network, and only where allowed.

A cell has its own network namespace with nothing in it but loopback, so no connection leaves it
by itself. A service whose spec lists `allow_egress` rules (each allowed for its tenant by the
operator, `[runtime] tenant_egress`) gets them through its host: in the cell, Python's `socket`
functions are wrapped so that resolving an allowed name answers a placeholder address, and
connecting a TCP socket to it (or to an allowed IP) asks the host over a dedicated Unix socket;
the host checks the destination against the rules, connects from its own network namespace, and
passes the connected socket back (SCM_RIGHTS), which replaces the service's socket in place.
TLS, HTTP clients and asyncio all work on it as usual.

What this enforces: TCP connections to exactly the listed host:port pairs, made from the host's
network; nothing else is reachable (no UDP, no other ports, no loopback services of the node,
no DNS of the cell's own). What it cannot stop: a listed destination that forwards elsewhere
(an open proxy), data the service sends to a listed destination, and a listed DNS name whose
records point somewhere public the operator did not mean (the host resolves names when connecting;
a name that resolves to loopback, a private or link-local address is refused: internal
destinations are allowed by their literal IP only).
Native code that calls connect(2) directly gets no route rather than a way around the rules.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading

from solo.runtime.cellwire import read_ready

PLACEHOLDER_NET = ipaddress.ip_network("198.18.0.0/15")  # benchmarking range, never routed
MAX_REQUEST = 1024


def parse_rules(rules) -> set[tuple[str, int]]:
    from solo.core.spec import parse_egress

    return {parse_egress(r) for r in rules}


class CellEgress:
    """In the cell: the wrapped socket functions (installed by `install`)."""

    def __init__(self, channel: socket.socket, rules: set[tuple[str, int]]):
        self.channel = channel
        self.rules = rules
        self.names: dict[str, str] = {}  # placeholder address -> the name it stands for
        self.lock = threading.Lock()
        self.real_getaddrinfo = socket.getaddrinfo
        self.real_connect = socket.socket.connect
        self.real_connect_ex = socket.socket.connect_ex

    def placeholder(self, name: str) -> str:
        for address, known in self.names.items():
            if known == name:
                return address
        address = str(PLACEHOLDER_NET[len(self.names) + 1])
        self.names[address] = name
        return address

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and any(h == name.lower() for h, _ in self.rules):
            try:
                ipaddress.ip_address(name)
            except ValueError:
                address = self.placeholder(name.lower())
                number = int(port) if str(port).isdigit() else socket.getservbyname(str(port))
                return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, number))]
        return self.real_getaddrinfo(host, port, family, type, proto, flags)

    def destination(self, sock: socket.socket, address) -> tuple[str, int] | None:
        """The (host, port) a TCP connect means, when the host should open it; None to leave it alone."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            return None
        host, port = address[0], int(address[1])
        name = self.names.get(host, host)
        try:
            if ipaddress.ip_address(name).is_loopback and (name, port) not in self.rules:
                return None  # the cell's own loopback (a rule may name the node's, by its literal IP)
        except ValueError:
            pass
        return name.lower(), port

    def open(self, host: str, port: int) -> socket.socket:
        """Ask the host for a connection; OSError (as connect would raise) when refused or failed."""
        with self.lock:
            self.channel.sendall(json.dumps({"host": host, "port": port}).encode())
            data, fds, _flags, _addr = socket.recv_fds(self.channel, MAX_REQUEST, 1)
        answer = json.loads(data or b"{}")
        if not fds:
            raise ConnectionRefusedError(111, answer.get("error", "egress refused"))
        return socket.socket(fileno=fds[0])

    def connect(self, sock: socket.socket, address) -> None:
        where = self.destination(sock, address)
        if where is None:
            return self.real_connect(sock, address)
        timeout = sock.gettimeout()
        connected = self.open(*where)
        try:
            import os

            os.dup2(connected.fileno(), sock.fileno())  # the service's socket object is now the connection
        finally:
            connected.close()
        sock.settimeout(timeout)  # restores its blocking mode on the new descriptor

    def connect_ex(self, sock: socket.socket, address) -> int:
        try:
            self.connect(sock, address)
            return 0
        except OSError as exc:
            return exc.errno or 111


class HostEgress:
    """In the host: serve the cell's connection requests one at a time, against the service's rules."""

    def __init__(self, channel: socket.socket, timeout: float = 10.0):
        self.channel = channel
        self.rules: set[tuple[str, int]] = set()
        self.timeout = timeout
        self.opened = self.refused = 0
        channel.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(channel, self._readable)

    def _readable(self) -> None:
        data = read_ready(lambda: self.channel.recv(MAX_REQUEST))
        if data is None:
            return
        if not data:
            self.close()
            return
        self.loop.remove_reader(self.channel)  # one request at a time: the next is read once this one is answered
        self.loop.create_task(self._serve(data))

    async def _serve(self, data: bytes) -> None:
        sock = None
        try:
            request = json.loads(data)
            host, port = str(request["host"])[:253].lower(), int(request["port"])
            if (host, port) not in self.rules:
                raise PermissionError(f"egress to {host}:{port} is not in this service's allow_egress rules")
            infos = await asyncio.wait_for(self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.timeout)
            family, kind, proto, _, address = _public(host, infos)
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            await asyncio.wait_for(self.loop.sock_connect(sock, address), self.timeout)
            socket.send_fds(self.channel, [b"{}"], [sock.fileno()])
            self.opened += 1
        except Exception as exc:  # noqa: BLE001 - the service gets the reason as a refused connection
            self.refused += 1
            try:
                self.channel.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]}).encode())
            except OSError:
                pass
        finally:
            if sock is not None:
                sock.close()
            if self.channel.fileno() >= 0:
                self.loop.add_reader(self.channel, self._readable)

    def close(self) -> None:
        if self.channel.fileno() >= 0:
            self.loop.remove_reader(self.channel)
            self.channel.close()


_EMBEDDING = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))  # NAT64


def _global(address) -> bool:
    """Public, and so is any IPv4 address it carries (NAT64, 6to4, IPv4-mapped or -compatible IPv6 reach
    that IPv4 address, e.g. 64:ff9b::a00:5 is 10.0.0.5 behind a NAT64 gateway)."""
    if not address.is_global:
        return False
    if address.version == 6:
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in net for net in _EMBEDDING):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and int(address) >> 32 == 0:  # ::a.b.c.d, the old IPv4-compatible form
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded.is_global
    return True


def _public(name: str, infos: list) -> tuple:
    """The first address `name` resolved to that is on the public internet. A rule names an internal
    address only as a literal IP: a name whose records point at loopback, a private network, link-local
    (cloud metadata) or the like is refused, so DNS cannot turn an allowed name into the node's own ports."""
    try:
        ipaddress.ip_address(name)
        return infos[0]  # the operator allowed this exact address
    except ValueError:
        pass
    for info in infos:
        if _global(ipaddress.ip_address(info[4][0].split("%")[0])):
            return info
    found = ", ".join(sorted({info[4][0] for info in infos}))[:200]
    raise PermissionError(f"{name} resolves only to non-public addresses ({found}); allow an internal destination "
                          "by its IP address, not a name")


def install(channel: socket.socket, rules) -> CellEgress:
    egress = CellEgress(channel, parse_rules(rules))
    socket.getaddrinfo = egress.getaddrinfo
    socket.socket.connect = lambda sock, address: egress.connect(sock, address)
    socket.socket.connect_ex = lambda sock, address: egress.connect_ex(sock, address)
    return egress


__all__ = ["CellEgress", "HostEgress", "PLACEHOLDER_NET", "install", "parse_rules"]
