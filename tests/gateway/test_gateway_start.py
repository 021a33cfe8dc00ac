"""Gateway start-up and its Prometheus endpoint (real gRPC server, real HTTP scrape)."""
from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from solo.config import load_config
from solo.errors import FailedPrecondition
from solo.gateway.server import start_gateway
from solo.security.keys import KeyRing
from solo.security.tokens import authenticator
from tests.conftest import EXAMPLES


class StillRegistry:
    """A registry with no services whose routes never change (the gateway only reads routes here)."""

    async def wait_routes(self, known_version, timeout):
        if known_version:
            await asyncio.sleep(timeout)
        return 1, []


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(None, data_dir=str(tmp_path), gateway__port=port)
        auth = authenticator(config, KeyRing(tmp_path / "keys"))

        async def start():
            await start_gateway(config, StillRegistry(), auth)

        with pytest.raises(FailedPrecondition, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
            asyncio.run(start())


def test_prometheus_metrics_endpoint(solo, alice, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    for _ in range(3):
        alice.call(name, "echo", "x")
    port = solo.supervisor.gateway.metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    calls = [s for s in families["solo_gateway_calls"].samples
             if s.labels.get("tenant") == "alice" and s.labels.get("service") == name and s.name.endswith("_total")]
    assert calls and calls[0].labels["code"] == "OK" and calls[0].value == 3
    assert "solo_gateway_call_duration_seconds" in families
    alice.stop(name, remove=True)


def test_event_log_health_is_exported(solo):
    import time
    port = solo.supervisor.gateway.metrics_port
    deadline = time.monotonic() + 15
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        if samples.get("solo_event_log_writable") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert samples["solo_event_log_writable"] == 1
    assert samples["solo_event_log_last_id"] >= 0
