"""The gateway's health model (gateway/health.py): liveness and readiness from what the gateway reports, on a
hand-driven clock; the JSON answers name only Solo's own checks in fixed words."""
from __future__ import annotations

import asyncio
import json

import pytest

from solo.gateway.health import Health, follow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def healthy(clock: Clock, **kwargs) -> Health:
    health = Health(clock, stale_after=60.0, wedged_after=30.0, **kwargs)
    health.routes_synced()
    health.event_log_status(answered=True, writable=True)
    return health


def test_not_ready_until_each_source_has_answered():
    clock = Clock()
    health = Health(clock)
    status, body = health.answer("/ready")
    assert status == 503 and body["status"] == "not ready"
    assert {n for n, c in body["checks"].items() if not c["ok"]} == {"registry", "routes", "event_log"}
    health.routes_synced()
    assert set(health.readiness().checks) == {"registry", "routes", "event_log"}
    assert not health.readiness().ok
    health.event_log_status(answered=True)
    assert health.answer("/ready") == (200, {"status": "ready", "checks": {
        "registry": {"ok": True}, "routes": {"ok": True}, "event_log": {"ok": True}}})


def test_a_gateway_without_an_event_log_has_no_such_check():
    health = Health(Clock(), event_log=False)
    health.routes_synced()
    assert health.readiness().ok and "event_log" not in health.readiness().checks


@pytest.mark.parametrize(("answered", "writable", "words"), [(False, True, "does not answer"),
                                                            (True, False, "last write failed")])
def test_the_event_log_failing_makes_it_not_ready_then_it_recovers(answered, writable, words):
    health = healthy(Clock())
    health.event_log_status(answered=answered, writable=writable)
    status, body = health.answer("/ready")
    assert status == 503 and words in body["checks"]["event_log"]["reason"]
    assert body["checks"]["registry"] == {"ok": True}
    assert health.answer("/health")[0] == 200  # still alive: not ready is not wedged
    health.event_log_status(answered=True, writable=True)
    assert health.answer("/ready")[0] == 200


def test_registry_failures_and_stale_routes():
    clock = Clock()
    health = healthy(clock)
    health.registry_failed(unavailable=True)
    assert health.readiness().checks["registry"] == {"ok": False,
                                                     "reason": "the registry is unavailable (restarting or stopped)"}
    assert health.readiness().checks["routes"]["ok"]  # the table it has is recent
    health.registry_failed(unavailable=False)
    assert "failed to answer" in health.readiness().checks["registry"]["reason"]
    health.routes_synced()
    assert health.readiness().ok
    clock.now += 59  # a registry that hangs: no error, no answer
    assert health.readiness().ok
    clock.now += 2
    verdict = health.readiness()
    assert not verdict.ok and verdict.checks["routes"]["reason"].startswith("the route table was last synced")
    assert "61 s ago" in verdict.checks["routes"]["reason"]
    health.routes_synced()
    assert health.readiness().ok


def test_draining_is_not_ready_for_good():
    health = healthy(Clock())
    health.drain()
    assert health.answer("/ready") == (503, {"status": "not ready", "checks": {
        "registry": {"ok": True}, "routes": {"ok": True}, "event_log": {"ok": True},
        "draining": {"ok": False, "reason": "the gateway is stopping"}}})
    health.routes_synced()
    assert not health.readiness().ok
    assert health.answer("/health")[0] == 200


def test_liveness_fails_only_when_the_loop_has_not_beaten():
    clock = Clock()
    health = healthy(clock)
    clock.now += 29
    assert health.answer("/health") == (200, {"status": "alive", "checks": {"event_loop": {"ok": True}}})
    clock.now += 2
    status, body = health.answer("/health")
    assert status == 503 and body["status"] == "not alive"
    assert body["checks"]["event_loop"]["reason"] == "the gateway's event loop has not run for 31 s"
    health.beat()
    assert health.answer("/health")[0] == 200


def test_answers_are_json_and_name_no_caller_data():
    health = Health(Clock())
    health.registry_failed()
    health.event_log_status(answered=False)
    for path in ("/health", "/ready"):
        status, body = health.answer(path)
        assert json.loads(json.dumps(body)) == body
    with pytest.raises(ValueError, match="no health path"):
        health.answer("/metrics")


def test_follow_publishes_changes_only_and_leaves_a_stopping_gateway_alone():
    clock = Clock()
    health = healthy(clock)
    published: list[bool] = []

    async def publish(ready: bool) -> None:
        published.append(ready)

    async def run():
        task = asyncio.create_task(follow(health, publish, shown=True, every=0.01))
        await asyncio.sleep(0.05)
        health.event_log_status(answered=False)
        while published != [False]:
            await asyncio.sleep(0.01)
        health.event_log_status(answered=True)
        while published != [False, True]:
            await asyncio.sleep(0.01)
        health.drain()
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 30))
    assert published == [False, True]  # draining: the gateway's stop sets grpc health itself
    assert health.answer("/health")[0] == 200
