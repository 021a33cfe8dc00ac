"""What one client can hold of the REST gateway: a connection that never finishes a request's head is closed
(else [rest] max_connections of them would shut everyone out), and a head past 64 KiB is refused."""
from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from tests.conftest import closed_within


def _connect(rest_url: str) -> socket.socket:
    where = urlsplit(rest_url)
    return socket.create_connection((where.hostname, where.port), timeout=10)


def test_a_connection_that_sends_nothing_is_closed(rest_url):
    with _connect(rest_url) as sock:
        assert closed_within(sock, 60)


def test_a_request_head_sent_a_byte_at_a_time_is_closed(rest_url):
    with _connect(rest_url) as sock:
        sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            while time.monotonic() - started < 60:
                sock.sendall(b"X-Slow: a\r\n")
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_within(sock, 5)
        assert time.monotonic() - started < 60


def test_a_head_of_a_mebibyte_is_refused(rest_url):
    """(h11 counts a head while it is incomplete: one that arrives whole in a read or two may pass 64 KiB, but what
    the gateway buffers of a head stays within 64 KiB and a read)"""
    with _connect(rest_url) as sock:
        try:
            sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all sent
        answer = sock.recv(65536)
        assert answer.split(b" ")[1] in (b"400", b"431"), answer[:200]
        assert closed_within(sock, 10)


def test_a_kept_alive_connection_serves_requests_one_after_another(rest_url):
    with _connect(rest_url) as sock:
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 ")
