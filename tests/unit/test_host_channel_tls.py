"""The call channel with [tls] hosts: real TLS with node certificates between a HostLink (the gateway's
end) and a HostListener (the host's call port), over real sockets on 127.0.0.1, no Ray.

The "cell" here is the test: it takes the socket the listener hands over and answers calls on it. A
recording proxy sits between the two ends, standing in for the network between two nodes."""
from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest

from solo._proto import host_pb2
from solo.core.dispatch import HostLink
from solo.core.frames import FrameReader, frame
from solo.core.handshake import peer_ticket
from solo.core.routes import Route
from solo.errors import Unavailable
from solo.runtime.host_listener import HostListener, connect_authenticated
from solo.security import certs
from solo.security.node_tls import NodeTls, required

KEY = "host-key-" + "k" * 32
PAYLOAD = "SECRET-PAYLOAD-0123456789"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    certs.init_ca(root)
    certs.issue_node(root, "worker-1")
    certs.issue_node(root, "head")
    certs.issue_client(root, "acme-laptop", tenant="acme")
    certs.issue_server(root)
    other = tmp_path_factory.mktemp("other-ca")
    certs.init_ca(other)
    certs.issue_node(other, "intruder")
    return root, other


class Cell:
    """Answers every call on the sockets its host hands it with the call's own input."""

    def __init__(self):
        self.tasks: list[asyncio.Task] = []

    def handoff(self, sock: socket.socket, expires: float) -> bool:
        self.tasks.append(asyncio.ensure_future(self._serve(sock.dup())))
        return True

    async def _serve(self, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        frames = FrameReader()
        while data := await reader.read(65536):
            for payload in frames.feed(data):
                answers = [host_pb2.Result(id=c.id, json=c.json, end=True)
                           for c in host_pb2.CallBatch.FromString(payload).calls]
                writer.write(frame(host_pb2.ResultBatch(results=answers).SerializeToString()))
        writer.close()


async def recording_proxy(target_port: int):
    """A TCP proxy on 127.0.0.1 that keeps every byte it forwards, both ways."""
    seen = bytearray()

    async def pipe(reader, writer):
        while data := await reader.read(65536):
            seen.extend(data)
            writer.write(data)
            await writer.drain()
        writer.close()

    async def handle(client_reader, client_writer):
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def listening(pki, mode="all"):
    root, _ = pki
    cell = Cell()
    listener = HostListener(KEY, cell.handoff, NodeTls.load(mode, root / "nodes" / "worker-1"))
    port = await listener.start("127.0.0.1")
    return listener, port, cell


def route(port: int, key: str = KEY) -> Route:
    return Route(tenant="acme", name="svc", version="1", state="RUNNING", address=f"127.0.0.1:{port}", key=key)


def test_calls_cross_the_channel_encrypted_and_the_key_never_appears_on_the_wire(pki):
    async def scenario():
        listener, port, _ = await listening(pki)
        proxy, proxy_port, seen = await recording_proxy(port)
        link = HostLink(route(proxy_port), tls=NodeTls.load("all", pki[0] / "nodes" / "head"))
        for _ in range(3):
            result = await link.call("echo", f'"{PAYLOAD}"', None, 10)
            assert result.json == f'"{PAYLOAD}"'
        await link.aclose()
        listener.close()
        proxy.close()
        return bytes(seen)

    seen = run(scenario())
    assert len(seen) > 1000  # the TLS handshake and the calls went through the proxy
    assert PAYLOAD.encode() not in seen and KEY.encode() not in seen
    assert seen[0] == 0x16  # a TLS record, not a plaintext Hello


def test_a_plaintext_connection_is_refused_where_tls_is_required(pki):
    async def scenario():
        listener, port, cell = await listening(pki)
        link = HostLink(route(port))  # no TLS: what a gateway without [tls] hosts would do
        with pytest.raises(Unavailable):
            await link.call("echo", '"x"', None, 10)
        listener.close()
        return listener.refused, cell.tasks

    refused, handed = run(scenario())
    assert refused == 1 and handed == []


def test_remote_mode_keeps_loopback_plaintext_but_requires_tls_from_other_machines():
    assert not required("remote", "127.0.0.1") and not required("remote", "::1")
    assert required("remote", "10.0.0.5") and required("remote", "fd00::5")
    assert required("all", "127.0.0.1") and not required("off", "10.0.0.5")


def _tls_client(pki, cert: str, key: str, ca=None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(str(ca or pki[0] / "ca.crt"))
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("who", ["tenant client certificate", "another CA's node", "no certificate"])
def test_only_a_node_certificate_of_this_ca_gets_to_the_handshake(pki, who):
    root, other = pki

    async def scenario():
        listener, port, cell = await listening(pki)
        if who == "tenant client certificate":
            context = _tls_client(pki, root / "clients" / "acme-laptop.crt", root / "clients" / "acme-laptop.key")
        elif who == "another CA's node":
            context = _tls_client(pki, other / "nodes" / "intruder" / "node.crt",
                                  other / "nodes" / "intruder" / "node.key")
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.load_verify_locations(str(root / "ca.crt"))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="x")
            hello = host_pb2.Hello(identity="", nonce=b"n" * 16)
            writer.write(frame(hello.SerializeToString()))
            answer = await asyncio.wait_for(reader.read(100), 5)
        except (ssl.SSLError, ConnectionError, OSError):
            answer = b""
        deadline = time.monotonic() + 5
        while listener.refused == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        listener.close()
        return answer, listener.refused, cell.tasks

    answer, refused, handed = run(scenario())
    assert answer == b"" and refused == 1 and handed == []  # no Challenge was sent: nothing learned


def test_the_gateway_refuses_a_host_port_without_a_node_certificate(pki):
    root, _ = pki

    async def scenario():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(root / "server.crt"), str(root / "server.key"))  # the gateway's, not a node's
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        link = HostLink(route(port), tls=NodeTls.load("all", root / "nodes" / "head"))
        with pytest.raises(Unavailable) as caught:
            await link.call("echo", '"x"', None, 10)
        server.close()
        return str(caught.value)

    assert "not on a Solo node" in run(scenario())


def test_a_direct_call_between_services_is_relayed_over_tls(pki):
    """What a host does for its cell's solo.discover: connect with the peer ticket over TLS and hand the cell
    a socket whose bytes the host relays; the cell's HostLink works on it as on a plain connection."""
    async def scenario():
        listener, port, _ = await listening(pki)
        proxy, proxy_port, seen = await recording_proxy(port)
        ticket = peer_ticket(KEY, "bob", time.time() + 30)
        sock = await connect_authenticated(f"127.0.0.1:{proxy_port}", ticket,
                                           tls=NodeTls.load("all", pki[0] / "nodes" / "head"))
        link = HostLink(route(proxy_port, ticket), sock=sock)
        result = await link.call("echo", f'"{PAYLOAD}"', None, 10)
        await link.aclose()
        listener.close()
        proxy.close()
        return result.json, bytes(seen)

    answer, seen = run(scenario())
    assert answer == f'"{PAYLOAD}"'
    assert PAYLOAD.encode() not in seen and b"bob" not in seen


def test_missing_node_files_say_what_to_run(tmp_path):
    from solo.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition) as caught:
        NodeTls.load("remote", tmp_path / "nowhere")
    assert "solo certs node" in str(caught.value) and "node.crt" in str(caught.value)
    assert NodeTls.load("off", tmp_path / "nowhere") is None


def test_one_machine_gets_its_node_certificate_on_first_use_and_a_cluster_does_not(tmp_path):
    from solo.cli_up import ensure_local_node_certificate
    from solo.config import load_config

    local = load_config(None, data_dir=tmp_path / "one", tls__hosts="all")
    assert ensure_local_node_certificate(local)
    assert NodeTls.load("all", local.node_tls_dir) is not None
    assert not ensure_local_node_certificate(local)  # made once
    cluster = load_config(None, data_dir=tmp_path / "two", tls__hosts="remote", tls__node_dir=str(tmp_path / "mnt"))
    assert not ensure_local_node_certificate(cluster) and not (tmp_path / "mnt").exists()
    assert not ensure_local_node_certificate(load_config(None, data_dir=tmp_path / "three"))


def test_a_host_relays_at_most_max_relays_tls_connections(pki, monkeypatch):
    from solo.runtime import host_listener

    monkeypatch.setattr(host_listener, "MAX_RELAYS", 2)

    async def scenario():
        listener, port, _ = await listening(pki)
        tls = NodeTls.load("all", pki[0] / "nodes" / "head")
        links = [HostLink(route(port), tls=tls) for _ in range(3)]
        answers = []
        for link in links:
            try:
                answers.append((await link.call("echo", '"x"', None, 10)).json)
            except Unavailable:
                answers.append("refused")
        during = host_listener.relays()
        for link in links:
            await link.aclose()
        deadline = time.monotonic() + 10
        while host_listener.relays() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        listener.close()
        return answers, during, host_listener.relays()

    answers, during, after = run(scenario())
    assert answers == ['"x"', '"x"', "refused"] and during == 2 and after == 0


def test_a_source_past_its_refused_handshakes_is_closed_before_any_tls(pki, monkeypatch):
    from solo.runtime import host_listener

    monkeypatch.setattr(host_listener, "FAILURES_BURST", 3.0)
    monkeypatch.setattr(host_listener, "FAILURES_PER_SECOND", 0.01)

    async def scenario():
        listener, port, cell = await listening(pki)
        for _ in range(3):  # plaintext where TLS is required: refused, each counted against the source
            with pytest.raises(Unavailable):
                await HostLink(route(port)).call("echo", '"x"', None, 10)
        link = HostLink(route(port), tls=NodeTls.load("all", pki[0] / "nodes" / "head"))
        with pytest.raises(Unavailable):  # even a good node from that source waits for the budget to refill
            await link.call("echo", '"x"', None, 10)
        listener.close()
        return listener.refused, cell.tasks

    refused, handed = run(scenario())
    assert refused == 4 and handed == []


def test_the_registry_seal_key_is_kept_and_a_damaged_one_is_not_silently_replaced(tmp_path):
    from solo.security import seal

    key = seal.load_or_create(tmp_path)
    assert (tmp_path / seal.SEAL_FILE).stat().st_mode & 0o777 == 0o600
    sealed = seal.seal(seal.public_text(key), "the host key", "host key")
    assert seal.open_sealed(seal.load_or_create(tmp_path), sealed, "host key") == "the host key"
    with pytest.raises(seal.SealError):  # bound to its purpose
        seal.open_sealed(key, sealed, "peer ticket")
    with pytest.raises(seal.SealError):  # a low-order point is a clear refusal, not a ValueError
        seal.seal("A" * 43 + "=", "x", "peer ticket")
    (tmp_path / seal.SEAL_FILE).write_text("garbage")
    with pytest.raises(seal.SealError) as caught:
        seal.load_or_create(tmp_path)
    assert "restore it from a backup" in str(caught.value)
    assert (tmp_path / seal.SEAL_FILE).read_text() == "garbage"


def test_solo_certs_node_does_not_overwrite_a_node_without_force(tmp_path):
    from solo.errors import FailedPrecondition

    certs.init_ca(tmp_path)
    first = certs.issue_node(tmp_path, "worker-1").key.read_bytes()
    with pytest.raises(FailedPrecondition):
        certs.issue_node(tmp_path, "worker-1")
    assert certs.issue_node(tmp_path, "worker-1", force=True).key.read_bytes() != first
