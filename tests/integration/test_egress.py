"""Egress from a cell: only the host:port pairs a service lists, and only if the operator allows them
for its tenant ([runtime] tenant_egress); everything else stays unreachable."""
from __future__ import annotations

import contextlib
import socket
import time

import pytest

from solo import PermissionDenied, SoloClient, SoloError
from tests.conftest import source, tcp_echo_servers

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


@pytest.fixture(scope="module")
def echo_servers():
    with tcp_echo_servers(2) as ports:
        yield ports


def start_solo(data_dir, namespace: str, tenant_egress: dict):
    """A Solo of its own on the session's Ray whose config allows `tenant_egress` (the registry reads the
    config it was started with)."""
    from solo.config import load_config
    from solo.runtime.supervisor import ThreadedSolo

    config = load_config(None, data_dir=str(data_dir), namespace=namespace, gateway__port=0,
                         gateway__metrics_port=-1, runtime__warm_pool_size=0, runtime__restart_backoff_seconds=0.2,
                         runtime__start_timeout_seconds=30.0, runtime__stop_grace_seconds=2.0,
                         runtime__tenant_egress=tenant_egress)
    return ThreadedSolo(config).start()


@contextlib.contextmanager
def tenants(instance):
    with SoloClient(instance.address, instance.operator_token) as operator:
        tokens = [operator.mint_token(t) for t in ("alice", "bob")]
    with SoloClient(instance.address, tokens[0]) as alice, SoloClient(instance.address, tokens[1]) as bob:
        yield alice, bob


@pytest.fixture(scope="module")
def egress_solo(solo, echo_servers, tmp_path_factory):
    allowed = echo_servers[0]
    instance = start_solo(tmp_path_factory.mktemp("egress"), "solo-egress",
                          {"alice": [f"127.0.0.1:{allowed}", f"localhost:{allowed}"]})
    with tenants(instance) as clients:
        yield (instance, *clients)
    instance.stop()


@pytest.fixture
def alice(egress_solo):
    return egress_solo[1]


@pytest.fixture
def bob(egress_solo):
    return egress_solo[2]


def test_a_listed_destination_is_reachable_and_nothing_else(alice, name, echo_servers, egress_solo):
    allowed, other = echo_servers
    with socket.create_connection(("127.0.0.1", other), timeout=5) as conn:  # both servers answer from outside
        conn.sendall(b"x")
        assert conn.recv(100) == b"pong:x"
    alice.deploy(CLIENT, name, allow_egress=[f"127.0.0.1:{allowed}"])
    assert alice.call(name, "fetch", "127.0.0.1", allowed) == {"ok": "pong:ping"}
    assert alice.call(name, "afetch", "127.0.0.1", allowed) == {"ok": "pong:ping"}  # asyncio too
    gateway_port = int(egress_solo[0].address.rpartition(":")[2])
    for host, port in (("localhost", other), ("127.0.0.1", other), ("localhost", allowed),
                       ("localhost", gateway_port), ("127.0.0.1", gateway_port), ("10.0.0.1", 80)):
        assert "error" in alice.call(name, "fetch", host, port), (host, port)
    alice.stop(name, remove=True)


def test_a_name_that_resolves_to_an_internal_address_is_refused(alice, name, echo_servers):
    """Only a literal IP rule reaches an internal address: otherwise whoever controls a name's DNS records
    could point an allowed name at the node's own ports."""
    alice.deploy(CLIENT, name, allow_egress=[f"localhost:{echo_servers[0]}"])
    answer = alice.call(name, "fetch", "localhost", echo_servers[0])
    assert "non-public" in answer.get("error", ""), answer
    alice.stop(name, remove=True)


def test_a_service_without_rules_has_no_network(alice, name, echo_servers):
    alice.deploy(CLIENT, name)
    assert "error" in alice.call(name, "fetch", "localhost", echo_servers[0])
    assert "error" in alice.call(name, "fetch", "127.0.0.1", echo_servers[0])
    alice.stop(name, remove=True)


def test_rules_the_operator_did_not_allow_are_refused_at_deploy(alice, bob, name, echo_servers):
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


def test_a_restart_does_not_bring_back_egress_the_operator_took_away(solo, echo_servers, tmp_path):
    """Rules are checked again at every start, not only at deploy: after `solo up` with a config that no
    longer allows the destination, the service does not come back with it."""
    allowed = echo_servers[0]
    first = start_solo(tmp_path / "data", "solo-egress-restart", {"alice": [f"127.0.0.1:{allowed}"]})
    try:
        with tenants(first) as (alice, _):
            alice.deploy(CLIENT, "fetcher", allow_egress=[f"127.0.0.1:{allowed}"])
            assert alice.call("fetcher", "fetch", "127.0.0.1", allowed) == {"ok": "pong:ping"}
    finally:
        first.stop()
    second = start_solo(tmp_path / "data", "solo-egress-restart", {})
    try:
        with tenants(second) as (alice, _):
            deadline = time.monotonic() + 60
            while (status := alice.get("fetcher"))["state"] in ("STARTING", "RESTARTING", "SUSPENDED") \
                    and time.monotonic() < deadline:
                time.sleep(0.3)
            assert status["state"] != "RUNNING", status
            assert "tenant_egress" in status["message"], status
            with pytest.raises(SoloError):
                alice.call("fetcher", "fetch", "127.0.0.1", allowed)
    finally:
        second.stop()
