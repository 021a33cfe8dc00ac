"""Shared fixtures: one real Solo (real local Ray, real gRPC gateway on 127.0.0.1) per test session.

Tests that need Ray use the `solo` fixture; tests/unit needs neither Ray nor the network.
"""
from __future__ import annotations

import contextlib
import os
import socketserver
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "solo" / "examples"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: Ray stays on loopback


@pytest.fixture(scope="session")
def solo(tmp_path_factory):
    from solo.config import load_config
    from solo.runtime.supervisor import ThreadedSolo

    data_dir = tmp_path_factory.mktemp("solo-data")
    config = load_config(None, data_dir=str(data_dir), gateway__port=0, gateway__metrics_port=-1,
                         runtime__schedule_timeout_seconds=4.0,
                         runtime__restart_backoff_seconds=0.2, runtime__start_timeout_seconds=30.0,
                         runtime__stop_grace_seconds=2.0, limits__max_source_bytes=64 * 1024,
                         events__watch_slow_consumer_seconds=3.0, events__checkpoint_seconds=1.0,
                         limits__tenant_token_rates={"ratey": {"rate_per_second": 2, "burst": 3}},
                         limits__tenant_rates={"ratet": {"rate_per_second": 2, "burst": 3}},
                         limits__breaker_open_seconds=1.0,
                         logs__service_bytes=256 << 10,  # test_logs: a flood passes it within seconds
                         logs__slow_consumer_seconds=3.0,
                         quotas__tenants={"quotaco": {"max_services": 3, "max_memory_bytes": 300 << 20,
                                                      "max_concurrent_calls": 1}})
    instance = ThreadedSolo(config, num_cpus=2, resources={"slot": 1}).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def operator(solo):
    from solo import SoloClient
    with SoloClient(solo.address, solo.operator_token) as client:
        yield client


def _tenant_client(solo, operator, tenant):
    from solo import SoloClient
    return SoloClient(solo.address, operator.mint_token(tenant))


@pytest.fixture(scope="session")
def alice(solo, operator):
    with _tenant_client(solo, operator, "alice") as client:
        yield client


@pytest.fixture(scope="session")
def bob(solo, operator):
    with _tenant_client(solo, operator, "bob") as client:
        yield client


@pytest.fixture
def name():
    """A fresh service name per test, so tests sharing one Solo never collide."""
    return f"t-{uuid.uuid4().hex[:10]}"


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1, tolerate: tuple = ()):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (AssertionError).
    Exceptions of the types in `tolerate` count as "not yet" (e.g. Solo coming back). Tests synchronise with
    this, never with fixed sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except tolerate:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not reached within {timeout:g} s")
        time.sleep(every)


def closed_within(sock, seconds: float) -> bool:
    """Whether the other side closes `sock` within `seconds` (whatever it sends first is read and dropped)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def in_flight(client, service: str) -> int:
    """Calls of `service` the gateway has in flight for `client`'s tenant (to wait for a call to be running)."""
    found = next((s for s in client.metrics()["services"] if s["service"] == service), {})
    return int(found.get("in_flight", 0))


def source(text: str) -> str:
    return textwrap.dedent(text).lstrip()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"pong:" + self.request.recv(100))


@contextlib.contextmanager
def tcp_echo_servers(count: int = 2):
    """`count` TCP servers on 127.0.0.1 answering b"pong:" + what they got; yields their ports."""
    servers = [socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo) for _ in range(count)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
