"""The registry comes back from the event log: a killed registry takes its running hosts over."""
from __future__ import annotations

import ray

from solo.events import read_events
from solo.registry.actor import REGISTRY_NAME
from tests.conftest import EXAMPLES
from tests.conftest import wait_for as _wait_for


def wait_for(predicate, timeout=60.0, **options):
    return _wait_for(predicate, timeout, **{"every": 0.2, "tolerate": (Exception,), **options})


def test_killed_registry_comes_back_and_takes_running_services_over(solo, alice, bob, name):
    alice.deploy(EXAMPLES / "counter.py", name)
    bob.deploy(EXAMPLES / "kv.py", name)
    alice.stop(name)
    alice.deploy(EXAMPLES / "counter.py", name)  # STOPPED, then deployed again: gen 2
    for _ in range(5):
        alice.call(name, "incr")
    bob.call(name, "put", key="k", value="v")
    before = alice.get(name)

    ray.kill(ray.get_actor(REGISTRY_NAME, namespace=solo.supervisor.config.namespace), no_restart=False)
    # calls never needed the registry: they keep working while it is down
    assert alice.call(name, "incr") == 6

    after = wait_for(lambda: (i := alice.get(name))["state"] == "RUNNING" and i)
    assert after["pid"] == before["pid"] and after["version"] == before["version"], (before, after)
    assert alice.call(name, "get") == 6            # same process: its state survived
    assert bob.call(name, "get", key="k") == "v"
    recovered = [e for e in read_events(solo.supervisor.config.data_dir, subject=name).to_pylist()
                 if e["type"] == "service.recovered"]
    assert {(e["tenant"], '"reattached"' in e["payload"]) for e in recovered} >= {("alice", True), ("bob", True)}, \
        recovered
    # the rebuilt registry still manages them
    alice.stop(name, remove=True)
    bob.stop(name, remove=True)


def test_swaps_and_grants_survive_a_registry_restart(solo, alice, bob, name):
    alice.deploy(EXAMPLES / "counter.py", name)
    alice.call(name, "incr", by=4)
    alice.swap(name, EXAMPLES / "counter_v2.py", watch_seconds=0)
    alice.grant(name, "bob")
    assert bob.call(f"alice/{name}", "get") == 4
    before = alice.get(name)

    ray.kill(ray.get_actor(REGISTRY_NAME, namespace=solo.supervisor.config.namespace), no_restart=False)

    after = wait_for(lambda: (i := alice.get(name))["state"] == "RUNNING" and i)
    assert (after["version"], after["pid"]) == ("2", before["pid"]), (before, after)
    assert alice.call(name, "history") == []  # still version 2's process, with its state
    assert alice.grants()["given"] == [{"service": name, "to_tenant": "bob"}]
    assert bob.call(f"alice/{name}", "incr") == 5
    assert [(e["owner"], e["version"]) for e in bob.discover(name, owner="alice")] == [("alice", "2")]
    alice.stop(name, remove=True)
    assert bob.discover(name, owner="alice") == []
