"""The user flow of the core issue through SoloClient, against real Ray and a real gateway."""
from __future__ import annotations

import asyncio

import pytest

from solo import AlreadyExists, AsyncSoloClient, InvalidRequest, NotFound, ServiceFailed, Unavailable
from tests.conftest import EXAMPLES, in_flight, source, wait_for


def test_deploy_call_status_stop(alice, name):
    info = alice.deploy(EXAMPLES / "counter.py", name)
    assert info["state"] == "RUNNING"
    assert info["version"] == "1"
    assert alice.call(name, "incr", by=2) == 2
    assert alice.call(name, "incr") == 3
    status = alice.get(name)
    assert status["state"] == "RUNNING"
    assert status["pid"] > 0 and status["node_id"] and status["node_ip"]
    assert status["restarts"] == 0
    assert int(status["stats"]["calls"]) == 2 and int(status["stats"]["errors"]) == 0
    assert int(status["stats"]["rss_bytes"]) > 0
    assert status["uptime_seconds"] > 0
    assert status["methods"] == ["get", "incr", "reset"]
    assert name in [s["name"] for s in alice.list()]

    stopped = alice.stop(name)
    assert stopped["state"] == "STOPPED"
    with pytest.raises(Unavailable, match="stopped"):
        alice.call(name, "get")
    assert alice.get(name)["state"] == "STOPPED"
    # a stopped service can be deployed again without --replace, and starts fresh
    alice.deploy(EXAMPLES / "counter.py", name)
    assert alice.call(name, "get") == 0
    alice.stop(name, remove=True)
    with pytest.raises(NotFound):
        alice.get(name)


def test_deploy_is_idempotent_and_replace_is_explicit(alice, name):
    first = alice.deploy(EXAMPLES / "counter.py", name)
    again = alice.deploy(EXAMPLES / "counter.py", name)
    assert again["version"] == first["version"] == "1"
    assert again["pid"] == first["pid"]  # nothing restarted
    changed = source("""
        class Counter:
            def get(self):
                return "v2"
    """)
    with pytest.raises(AlreadyExists, match="--replace"):
        alice.deploy(changed, name)
    replaced = alice.deploy(changed, name, replace=True)
    assert replaced["version"] == "2"
    assert alice.call(name, "get") == "v2"
    alice.stop(name, remove=True)


def test_replace_that_fails_keeps_the_running_version(alice, name):
    alice.deploy(EXAMPLES / "counter.py", name)
    alice.call(name, "incr", by=5)
    broken = "class Broken:\n    def __init__(self):\n        raise RuntimeError('nope')\n    def get(self):\n        return 0\n"
    with pytest.raises(ServiceFailed, match="RuntimeError: nope"):
        alice.deploy(broken, name, replace=True)
    assert alice.call(name, "get") == 5
    assert alice.get(name)["version"] == "1"
    alice.stop(name, remove=True)


def test_sync_async_generator_and_bytes(alice, name):
    alice.deploy(source("""
        import asyncio
        import solo

        class Mixed(solo.Service):
            def add(self, a, b):
                return a + b

            async def later(self, x):
                await asyncio.sleep(0.01)
                return {"x": x}

            def upper(self, data):
                return data.upper()

            def count(self, n):
                for i in range(n):
                    yield i

            async def acount(self, n):
                for i in range(n):
                    yield {"i": i}

            def whoami(self):
                return [self.context.tenant, self.context.name, self.context.config]
    """), name, config={"mode": "test"}, labels={"team": "core"})
    assert alice.call(name, "add", 2, 3) == 5
    assert alice.call(name, "add", a="x", b="y") == "xy"
    assert alice.call(name, "later", x=[1, 2]) == {"x": [1, 2]}
    assert alice.call(name, "upper", b"bytes in") == b"BYTES IN"
    assert list(alice.stream(name, "count", 4)) == [0, 1, 2, 3]
    assert list(alice.stream(name, "acount", n=2)) == [{"i": 0}, {"i": 1}]
    assert alice.call(name, "whoami") == ["alice", name, {"mode": "test"}]
    with pytest.raises(InvalidRequest, match="streams its results"):
        alice.call(name, "count", 3)
    assert alice.get(name)["labels"] == {"team": "core"}
    alice.stop(name, remove=True)


def test_async_client(solo, operator, name):
    async def flow():
        async with AsyncSoloClient(solo.address, operator.mint_token("async-tenant")) as client:
            await client.deploy(EXAMPLES / "ticker.py", name)
            items = [item async for item in client.stream(name, "countdown", 3)]
            assert items == [3, 2, 1, "liftoff"]
            results = await asyncio.gather(*(client.call(name, "countdown", 1) for _ in range(3)),
                                           return_exceptions=True)
            assert all(isinstance(r, InvalidRequest) for r in results)
            assert [s["name"] for s in await client.list()] == [name]
            assert (await client.whoami())["tenant"] == "async-tenant"
            await client.stop(name)
    asyncio.run(flow())


def test_stop_runs_the_stop_hook_after_draining(alice, name, solo):
    alice.deploy(source("""
        import time
        class Slow:
            def work(self, seconds):
                time.sleep(seconds)
                return "done"
            def stop(self):
                print("stop hook ran")
    """), name)
    import threading
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("value", alice.call(name, "work", 1.0)))
    worker.start()
    wait_for(lambda: in_flight(alice, name) >= 1)
    alice.stop(name)
    worker.join(10)
    assert result.get("value") == "done"  # the in-flight call finished before the host went away


def test_metrics_count_calls_and_errors(alice, name):
    alice.deploy(EXAMPLES / "kv.py", name)
    alice.call(name, "put", key="a", value=1)
    with pytest.raises(NotFound):
        alice.call(name, "missing")
    metrics = {m["service"]: m for m in alice.metrics()["services"]}
    assert int(metrics[name]["calls"]) == 2
    assert int(metrics[name]["errors"]) == 1
    alice.stop(name, remove=True)
