"""The metric series of a removed service disappear from /metrics once the gateway's route table no
longer has it (real Solo, real gateway, real HTTP scrape)."""
from __future__ import annotations

import time
import urllib.request

from tests.conftest import EXAMPLES


def scrape(solo) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{solo.supervisor.gateway.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def series_of(solo, tenant: str, service: str) -> list[str]:
    return [line for line in scrape(solo).splitlines()
            if f'service="{service}"' in line and f'tenant="{tenant}"' in line]


def test_series_of_a_removed_service_are_dropped(solo, alice, name):
    assert solo.supervisor.gateway.metrics_server.address[0] == "127.0.0.1"
    kept = f"{name}-kept"
    alice.deploy(EXAMPLES / "echo.py", name)
    alice.deploy(EXAMPLES / "echo.py", kept)
    try:
        for service in (name, kept):
            assert alice.call(service, "echo", "hi") == "hi"
        assert any(line.startswith("solo_gateway_calls_total") for line in series_of(solo, "alice", name))
        alice.stop(name)  # stopped, not removed: still a service, its counts stay
        assert series_of(solo, "alice", name)
        alice.stop(name, remove=True)
        deadline = time.monotonic() + 20
        while series_of(solo, "alice", name) and time.monotonic() < deadline:
            time.sleep(0.1)  # the gateway follows the route table by long-poll
        assert series_of(solo, "alice", name) == []
        assert any(line.startswith("solo_gateway_calls_total") for line in series_of(solo, "alice", kept))
        alice.deploy(EXAMPLES / "echo.py", name)  # a new service of that name counts from zero
        assert alice.call(name, "echo", "again") == "again"
        calls = [line for line in series_of(solo, "alice", name) if line.startswith("solo_gateway_calls_total")]
        assert calls and calls[0].endswith(" 1.0"), calls
    finally:
        for service in (name, kept):
            try:
                alice.stop(service, remove=True)
            except Exception:  # noqa: BLE001 - already removed
                pass
