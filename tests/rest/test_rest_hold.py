"""What a REST client can make the gateway hold (found by the attacker review): a client without a valid token
gets 401 before it sends its body (the gateway reads none of it), and a client that opens a stream and stops
reading has its connection dropped within [rest] write_timeout_seconds, giving back the connection and the
call's slot (a gateway of its own on the suite's Solo, with a short write timeout)."""
from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import source, wait_for
from tests.rest.conftest import own_gateway

FLOOD = source("""
    class Flood:
        def flood(self, size: int, count: int):
            chunk = "x" * size
            for _ in range(count):
                yield chunk
""")


def _connect(url: str, receive_buffer: int | None = None) -> socket.socket:
    where = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting: the window the server may fill
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect((where.hostname, where.port))
    return sock


def _head(verb: str, path: str, token: str | None, length: int) -> bytes:
    lines = [f"{verb} {path} HTTP/1.1", "Host: solo", "Content-Type: application/json", f"Content-Length: {length}"]
    if token is not None:
        lines.append(f"Authorization: {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("token", [None, "Bearer", "Basic YWxpY2U6eA==", "Bearer forged-token"])
@pytest.mark.parametrize("verb,path", [("POST", "/v1/services"), ("POST", "/v1/services/echo/methods/echo"),
                                       ("PUT", "/v1/secrets/db"), ("POST", "/v1/tokens")])
def test_no_valid_token_is_401_before_the_body_is_sent(rest_url, token, verb, path):
    with _connect(rest_url) as sock:
        sock.sendall(_head(verb, path, token, 8 << 20))  # announces 8 MiB, sends none of it
        answer = sock.recv(65536)
    status = answer.split(b" ", 2)[1]
    assert status == b"401", answer[:300]
    assert b"UNAUTHENTICATED" in answer and b"www-authenticate: bearer" in answer.lower()


def test_a_valid_token_has_its_body_waited_for(rest_url, alice):
    with _connect(rest_url) as sock:
        sock.sendall(_head("POST", "/v1/services/echo/methods/echo", f"Bearer {alice.token}", 1 << 20))
        sock.settimeout(3)
        with pytest.raises(TimeoutError):  # the gateway reads the body it was promised before answering
            sock.recv(65536)


@pytest.fixture(scope="module")
def short_writes(solo):
    with own_gateway(solo, rest={"write_timeout_seconds": 2.0}) as gateway:
        yield gateway


def _in_flight(url: str, token: str, service: str) -> int:
    metrics = httpx.get(f"{url}/v1/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    found = next((s for s in metrics["services"] if s["service"] == service), {})
    return int(found.get("in_flight", 0))


def test_a_stream_whose_reader_stops_reading_is_dropped_and_its_slot_comes_back(short_writes, alice, name):
    url, state = short_writes.rest.url, short_writes.rest.server.server_state
    alice.deploy(FLOOD, name, filename="flood.py")
    try:
        body = b"[262144, 400]"  # 100 MiB of results, far more than the socket buffers between us hold
        with _connect(url, receive_buffer=4096) as sock:
            sock.sendall(_head("POST", f"/v1/services/{name}/methods/flood:stream", f"Bearer {alice.token}",
                               len(body)) + body)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "the stream did not start"
            assert state.connections  # this one
            started = time.monotonic()
            # now this client reads nothing: the gateway's writes stall, and it drops the connection
            wait_for(lambda: not state.connections, timeout=120)
            dropped = time.monotonic() - started
            wait_for(lambda: _in_flight(url, alice.token, name) == 0, timeout=60)  # the call's slot is back
            sock.settimeout(30)
            try:
                while sock.recv(1 << 20):  # what was in flight, then the end: reset or closed
                    pass
            except ConnectionResetError:
                pass
        print(f"stalled stream dropped after {dropped:.1f} s")
        # the gateway serves as before
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {alice.token}"}, timeout=30) as c:
            assert c.get("/v1/whoami").status_code == 200
    finally:
        alice.stop(name, remove=True)
