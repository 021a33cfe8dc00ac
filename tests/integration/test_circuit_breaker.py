"""A service version that keeps timing out trips its circuit breaker: calls then fail fast, one
probe tests it after the open period, and it closes once the service answers again."""
from __future__ import annotations

import json
import time

import pytest

from solo import SoloError, Unavailable
from solo.events import read_events
from tests.conftest import source

FLAKY = source("""
    import asyncio
    import time

    class Flaky:
        def __init__(self):
            self.slow_until = time.time() + 4  # hangs for its first seconds, then recovers

        async def work(self):
            if time.time() < self.slow_until:
                await asyncio.sleep(2)
            return "ok"
""")


def test_the_breaker_opens_on_timeouts_fails_fast_and_closes_after_recovery(solo, alice, name):
    alice.deploy(FLAKY, name)
    try:
        for _ in range(5):  # [limits] breaker_failures = 5
            with pytest.raises(SoloError):
                alice.call(name, "work", _timeout=0.3)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="circuit breaker is open") as err:
            alice.call(name, "work", _timeout=5)
        assert time.monotonic() - started < 1.0 and err.value.retry_after > 0  # fast, not another timeout
        deadline = time.monotonic() + 20
        while True:  # open 1 s in this suite, then a probe; the service recovers after ~4 s
            try:
                assert alice.call(name, "work", _timeout=3) == "ok"
                break
            except SoloError:
                assert time.monotonic() < deadline, "the breaker never closed"
                time.sleep(0.3)
        assert alice.call(name, "work") == "ok"
        states = []
        deadline = time.monotonic() + 15  # state changes are written with the next audit flush (10 s)
        while "closed" not in states and time.monotonic() < deadline:
            rows = read_events(solo.supervisor.config.data_dir, tenant="alice", subject=name,
                               type="service.breaker").to_pylist()
            states = [json.loads(r["payload"])["state"] for r in rows]
            time.sleep(0.5)
        assert states[0] == "open" and "half_open" in states and states[-1] == "closed"
    finally:
        alice.stop(name, remove=True)


FAILING_STREAM = source("""
    import asyncio

    class Stalling:
        async def ticks(self, n):
            for i in range(n):
                yield i
            await asyncio.sleep(2)  # then stalls past the caller's deadline
""")


def test_streams_count_toward_the_breaker_and_the_metrics_as_calls_do(alice, name):
    alice.deploy(FAILING_STREAM, name)
    try:
        for _ in range(5):  # [limits] breaker_failures = 5
            with pytest.raises(SoloError):
                list(alice.stream(name, "ticks", 2, _timeout=0.3))
        with pytest.raises(Unavailable, match="circuit breaker is open"):
            list(alice.stream(name, "ticks", 2, _timeout=5))
        served = next(s for s in alice.metrics()["services"] if s["service"] == name)
        assert int(served["calls"]) >= 6 and int(served["errors"]) >= 6, served
        assert int(served.get("in_flight", 0)) == 0 and float(served["latency_seconds_sum"]) > 0, served
    finally:
        alice.stop(name, remove=True)
