"""The gateway's metric series through real calls (real Solo, real gateway, real HTTP scrape): durations per
method, shed calls, breaker transitions, restarts, RSS and CPU per service, and a removed service's series
disappear once the gateway's route table no longer has it."""
from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from solo import NotFound, Overloaded, SoloClient, SoloError, Unavailable
from tests.conftest import EXAMPLES, in_flight, source, wait_for


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


# -- the series of issue 18: durations per method, shed calls, breaker changes, restarts, RSS/CPU ----------------

CRASHER = source("""
    import os, time

    class Crasher:
        def ping(self):
            return "pong"

        def busy(self, seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
            return "done"

        def crash(self):
            os._exit(1)
""")

SLOW = source("""
    import asyncio

    class Slow:
        async def wait(self, seconds):
            await asyncio.sleep(seconds)
            return seconds
""")


def samples(solo) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, of the gateway's /metrics."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(scrape(solo)) for s in f.samples}


def value(solo, name: str, **labels) -> float | None:
    return samples(solo).get((name, tuple(sorted(labels.items()))))


def test_call_durations_carry_only_the_methods_the_route_lists(solo, alice, bob, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    try:
        for _ in range(2):
            assert alice.call(name, "echo", "x") == "x"
        for made_up in ("nope", "also_not_there", "other"):  # a caller cannot make label values up
            with pytest.raises(NotFound):
                alice.call(name, made_up)
        counts = {dict(labels)["method"]: v for (sample, labels), v in samples(solo).items()
                  if sample == "solo_gateway_call_duration_seconds_count" and ("service", name) in labels}
        assert counts == {"echo": 2, "other": 3}
        assert value(solo, "solo_gateway_calls_total", tenant="alice", service=name, code="NOT_FOUND") == 3
        assert "solo_gateway_call_seconds" not in scrape(solo)  # the old name is gone
        summary = next(s for s in alice.metrics()["services"] if s["service"] == name)  # GetMetrics still sums
        assert int(summary["calls"]) == 5 and int(summary["errors"]) == 3 and summary["latency_seconds_sum"] > 0
        assert name not in [s["service"] for s in bob.metrics()["services"]]
    finally:
        alice.stop(name, remove=True)


def test_shed_calls_and_breaker_transitions_are_counted(solo, operator, alice, name):
    with SoloClient(solo.address, operator.mint_token("quotaco")) as quotaco:  # max_concurrent_calls 1
        quotaco.deploy(SLOW, name, max_concurrency=4)
        try:
            before = value(solo, "solo_gateway_shed_total", tenant="quotaco", reason="tenant_quota") or 0
            first = threading.Thread(target=quotaco.call, args=(name, "wait", 2.0))
            first.start()
            wait_for(lambda: in_flight(quotaco, name) >= 1)
            with pytest.raises(Overloaded, match="quota max_concurrent_calls"):
                quotaco.call(name, "wait", 0)
            first.join()
            assert value(solo, "solo_gateway_shed_total", tenant="quotaco", reason="tenant_quota") == before + 1
            assert not any(s == "solo_gateway_shed_total" and ("tenant", "alice") in labels
                           for s, labels in samples(solo))
        finally:
            quotaco.stop(name, remove=True)
    alice.deploy(SLOW, name)
    try:
        for _ in range(5):  # [limits] breaker_failures = 5: five timeouts open alice's breaker of the service
            with pytest.raises(SoloError):
                alice.call(name, "wait", 2.0, _timeout=0.3)
        with pytest.raises(Unavailable, match="circuit breaker is open"):
            alice.call(name, "wait", 0)
        assert value(solo, "solo_gateway_breaker_transitions_total", tenant="alice", service=name, to="open") == 1
        assert value(solo, "solo_gateway_breakers_open", tenant="alice", service=name) == 1
        wait_for(lambda: alice.call(name, "wait", 0) == 0, tolerate=(SoloError,))  # a probe after 1 s closes it
        assert value(solo, "solo_gateway_breaker_transitions_total", tenant="alice", service=name, to="closed") == 1
        assert value(solo, "solo_gateway_breakers_open", tenant="alice", service=name) is None  # none open
    finally:
        alice.stop(name, remove=True)
    wait_for(lambda: not series_of(solo, "alice", name))
    assert f'service="{name}"' not in scrape(solo)


def test_restarts_rss_and_cpu_per_service_and_gone_with_it(solo, alice, bob, name):
    alice.deploy(CRASHER, name)
    bob.deploy(CRASHER, name)  # the same name in another tenant: its own series
    try:
        assert alice.call(name, "busy", 0.3) == "done"
        assert value(solo, "solo_service_restarts_total", tenant="alice", service=name) == 0
        with pytest.raises(Unavailable):
            alice.call(name, "crash", _timeout=20)
        wait_for(lambda: alice.get(name)["state"] == "RUNNING" and alice.get(name)["restarts"] == 1)
        wait_for(lambda: value(solo, "solo_service_restarts_total", tenant="alice", service=name) == 1)
        assert value(solo, "solo_service_restarts_total", tenant="bob", service=name) == 0
        wait_for(lambda: alice.call(name, "busy", 0.3) == "done", tolerate=(Unavailable,))  # the gateway follows
        # [gateway] usage_poll_seconds (15 s by default): the next poll has both services
        rss = wait_for(lambda: value(solo, "solo_service_memory_rss_bytes", tenant="alice", service=name), 60)
        assert 10 << 20 < rss < 4 << 30  # a Python host and its cell
        wait_for(lambda: (value(solo, "solo_service_cpu_seconds_total", tenant="alice", service=name) or 0) >= 0.3,
                 60)
        assert wait_for(lambda: value(solo, "solo_service_memory_rss_bytes", tenant="bob", service=name), 60) > 10 << 20
    finally:
        alice.stop(name, remove=True)
        bob.stop(name, remove=True)
    wait_for(lambda: not [line for line in scrape(solo).splitlines() if f'service="{name}"' in line])
