"""Egress from a cell: only the host:port pairs a service lists, and only if the operator allows them
for its tenant ([runtime] tenant_egress); everything else stays unreachable."""
from __future__ import annotations

import socket
import socketserver
import threading

import pytest

from solo import PermissionDenied
from tests.conftest import source

CLIENT = source("""
    import asyncio, socket

    class Client:
        def fetch(self, host, port):
            try:
                with socket.create_connection((host, port), timeout=5) as conn:
                    conn.sendall(b"ping")
                    return {"ok": conn.recv(100).decode()}
            except OSError as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}

        async def afetch(self, host, port):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
                writer.write(b"ping")
                data = await reader.read(100)
                writer.close()
                return {"ok": data.decode()}
            except OSError as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}
""")


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        data = self.request.recv(100)
        self.request.sendall(b"pong:" + data)


@pytest.fixture
def echo_servers():
    servers = [socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [s.server_address[1] for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def egress_allowed(solo, echo_servers):
    runtime = solo.supervisor.config.runtime
    saved = dict(runtime.tenant_egress)
    runtime.tenant_egress = {"alice": [f"localhost:{echo_servers[0]}"]}
    yield
    runtime.tenant_egress = saved


def test_a_listed_destination_is_reachable_and_nothing_else(alice, name, echo_servers, egress_allowed, solo):
    allowed, other = echo_servers
    with socket.create_connection(("127.0.0.1", other), timeout=5) as conn:  # both servers answer from outside
        conn.sendall(b"x")
        assert conn.recv(100) == b"pong:x"
    alice.deploy(CLIENT, name, allow_egress=[f"localhost:{allowed}"])
    assert alice.call(name, "fetch", "localhost", allowed) == {"ok": "pong:ping"}
    assert alice.call(name, "afetch", "localhost", allowed) == {"ok": "pong:ping"}  # asyncio too
    gateway_port = int(solo.address.rpartition(":")[2])
    for host, port in (("localhost", other), ("127.0.0.1", other), ("127.0.0.1", allowed),
                       ("localhost", gateway_port), ("10.0.0.1", 80)):
        assert "error" in alice.call(name, "fetch", host, port), (host, port)
    alice.stop(name, remove=True)


def test_a_service_without_rules_has_no_network(alice, name, echo_servers, egress_allowed):
    alice.deploy(CLIENT, name)
    assert "error" in alice.call(name, "fetch", "localhost", echo_servers[0])
    assert "error" in alice.call(name, "fetch", "127.0.0.1", echo_servers[0])
    alice.stop(name, remove=True)


def test_rules_the_operator_did_not_allow_are_refused_at_deploy(alice, bob, name, echo_servers, egress_allowed):
    with pytest.raises(PermissionDenied, match="tenant_egress"):
        alice.deploy(CLIENT, name, allow_egress=[f"localhost:{echo_servers[1]}"])
    with pytest.raises(PermissionDenied, match="tenant_egress"):  # alice's rule is not bob's
        bob.deploy(CLIENT, name, allow_egress=[f"localhost:{echo_servers[0]}"])
    assert name not in [s["name"] for s in alice.list()] + [s["name"] for s in bob.list()]


RECONNECT = source("""
    import ctypes, os, socket, stat

    class Reconnect:
        def attempt(self, port):
            libc = ctypes.CDLL(None, use_errno=True)
            unspec = (ctypes.c_ubyte * 16)()  # struct sockaddr with sa_family = AF_UNSPEC: disconnects TCP
            results = []
            for fd in map(int, os.listdir("/proc/self/fd")):
                try:
                    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                        continue
                    sock = socket.socket(fileno=os.dup(fd))
                except OSError:
                    continue
                if sock.family != socket.AF_INET:
                    sock.close()
                    continue
                rc = libc.connect(sock.fileno(), unspec, 16)
                try:
                    sock.setblocking(True)
                    socket.socket.__base__.connect(sock, ("127.0.0.1", port))  # the unwrapped connect
                    results.append("reconnected")
                except OSError as exc:
                    results.append(f"{rc}/{ctypes.get_errno()}: {exc}")
                try:
                    sock.sendto(b"x", 0x20000000, ("127.0.0.1", port))  # TCP Fast Open
                    results.append("fastopen")
                except OSError:
                    pass
                sock.detach()
            return results
""")


def test_a_cell_cannot_reconnect_the_sockets_its_host_handed_it(alice, name, echo_servers):
    """Every TCP socket in a cell was made in the host's network (the call connection here); seccomp
    refuses connect(2) and Fast Open sends, so none can be pointed elsewhere."""
    alice.deploy(RECONNECT, name)
    results = alice.call(name, "attempt", echo_servers[0])
    assert results, "the cell holds the gateway's connection, so there was something to try"
    assert not [r for r in results if r in ("reconnected", "fastopen")], results
    assert alice.call(name, "attempt", echo_servers[0]) is not None  # the service still answers
    alice.stop(name, remove=True)
