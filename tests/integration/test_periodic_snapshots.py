"""The host's `snapshot` control op (periodic snapshots, registry/snapshots.py) against hostile services: the
service keeps serving while it runs, and whatever snapshot() does (raise, hang, return something that is not
JSON or too large) is a clear error for the registry to log, never a stuck host or a frozen service (real
Ray, real hosts, real cells)."""
from __future__ import annotations

import time

import pytest
import ray

from solo.errors import DeadlineExceeded, FailedPrecondition, InvalidRequest, ServiceFailed
from solo.runtime.host import SNAPSHOT_SECONDS
from tests.conftest import source
from tests.integration.test_cell_control import host_of

# snapshot() is async here, so calls (sync methods, in the service's threads) can run beside it; a sync
# snapshot() runs in those same threads, between calls when max_concurrency is 1
HOSTILE = source("""
    import asyncio

    class Hostile:
        def __init__(self):
            self.mode, self.value = "ok", 0

        def set(self, mode, value=0):
            self.mode, self.value = mode, value

        def get(self):
            return self.value

        async def snapshot(self):
            if self.mode == "raise":
                raise RuntimeError("no state for you")
            if self.mode == "hang":
                await asyncio.sleep(3600)
            if self.mode == "slow":
                await asyncio.sleep(2)
            if self.mode == "object":
                return {"value": object()}
            if self.mode == "big":
                return {"value": "x" * 5000}
            if self.mode == "none":
                return None
            return {"value": self.value}

        def restore(self, state):
            self.value = state["value"]
""")

PLAIN = source("""
    class Plain:
        def hello(self):
            return "hi"
""")


def snapshot(host, max_state_bytes: int = 1 << 20, timeout: float = 30):
    return ray.get(host.snapshot.remote(max_state_bytes), timeout=timeout)


def test_snapshot_answers_json_text_while_the_service_keeps_serving(solo, alice, name):
    alice.deploy(HOSTILE, name)
    host = host_of(solo, "alice", name)
    alice.call(name, "set", "ok", 5)
    assert snapshot(host) == {"state": '{"value": 5}', "has_snapshot": True}
    alice.call(name, "set", "none")
    assert snapshot(host) == {"state": None, "has_snapshot": True}
    # nothing is drained or frozen: calls run while a slow snapshot() does
    alice.call(name, "set", "slow", 7)
    started = time.monotonic()
    pending = host.snapshot.remote(1 << 20)
    assert alice.call(name, "get") == 7
    assert not ray.wait([pending], timeout=0)[0]  # answered while the snapshot was still running
    assert ray.get(pending, timeout=30)["state"] == '{"value": 7}'
    assert time.monotonic() - started >= 2
    alice.stop(name, remove=True)


def test_a_service_without_snapshot_says_so(solo, alice, name):
    alice.deploy(PLAIN, name)
    assert snapshot(host_of(solo, "alice", name)) == {"state": None, "has_snapshot": False}
    alice.stop(name, remove=True)


@pytest.mark.parametrize("mode, error, words", [
    ("raise", ServiceFailed, "no state for you"),
    ("object", InvalidRequest, "JSON-compatible"),
    ("big", InvalidRequest, "max_state_bytes"),
])
def test_a_bad_snapshot_is_a_clear_error_and_the_service_serves_on(solo, alice, name, mode, error, words):
    alice.deploy(HOSTILE, name)
    host = host_of(solo, "alice", name)
    alice.call(name, "set", mode, 3)
    with pytest.raises(error, match=words):
        snapshot(host, max_state_bytes=1024)
    assert alice.call(name, "get") == 3
    alice.stop(name, remove=True)


def test_a_snapshot_that_hangs_times_out_and_is_not_asked_twice(solo, alice, name):
    alice.deploy(HOSTILE, name)
    host = host_of(solo, "alice", name)
    alice.call(name, "set", "hang", 4)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"snapshot\(\)"):
        snapshot(host, timeout=SNAPSHOT_SECONDS + 20)
    assert time.monotonic() - started < SNAPSHOT_SECONDS + 10
    # the hung one still holds its thread: a second request is refused at once rather than piling up
    with pytest.raises(FailedPrecondition, match="has not returned"):
        snapshot(host)
    assert alice.call(name, "get", _timeout=30) == 4  # and the service still serves
    alice.stop(name, remove=True)
