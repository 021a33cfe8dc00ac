"""A worker node is lost under running services: they come back on the surviving worker, with the state of
their last periodic snapshot, and a `node.lost` per tenant that names only that tenant's services."""
from __future__ import annotations

import json

import pytest

from tests.cluster.scripted import run_script

pytestmark = pytest.mark.slow


def lose_a_node(tmp_path, how: str) -> dict:
    return run_script("node_failure_script.py", tmp_path, how, timeout=600)


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def check(result: dict) -> None:
    worker1, worker2 = result["worker1"], result["worker2"]
    assert set(result["before"].values()) == {worker1}
    assert set(result["after"].values()) == {worker2}  # the only surviving node with the resource
    # the snapshot's state, and calls work on it
    assert (result["alice_value"], result["bob_value"], result["alice_incr"]) == (5, 7, 6)
    assert result["echo"] == "still here"
    assert result["restarts"] == {"acount": 0, "aecho": 0, "bcount": 0}  # not counted as crashes

    alice, bob = result["alice_events"], result["bob_events"]
    assert not of_type(alice, "service.crashed") and not of_type(bob, "service.restarting")
    [lost] = of_type(alice, "node.lost")  # once per node for the tenant
    assert lost["subject"] == lost["payload"]["node_id"] == worker1
    assert lost["payload"]["services"] == ["acount", "aecho", "apinned"]
    [bob_lost] = of_type(bob, "node.lost")
    assert bob_lost["payload"]["services"] == ["bcount"]  # never another tenant's service names
    assert "acount" not in json.dumps(bob) and "bcount" not in json.dumps(alice)
    assert sorted(result["operator_lost"]) == ["alice", "bob"]

    moved = {e["subject"]: e["payload"] for e in of_type(alice, "service.rescheduled")}
    assert moved["acount"]["state"] == "restored from the last snapshot"
    assert moved["acount"]["node_id"] == worker2 and moved["acount"]["from_node"] == worker1
    assert moved["acount"]["snapshot_age_seconds"] >= 0
    assert moved["aecho"]["state"].startswith("fresh")  # echo has no snapshot()
    # a service only the lost node could hold fails with the placement error, like a deploy would
    assert result["pinned"]["node"] == worker1
    assert result["pinned"]["message"].startswith("could not be rescheduled after its node was lost: ")
    assert "no node in the cluster can ever hold this service" in result["pinned"]["message"]
    [failed] = of_type(alice, "service.failed")
    assert failed["subject"] == "apinned"
    [bob_moved] = of_type(bob, "service.rescheduled")
    assert bob_moved["payload"]["state"] == "restored from the last snapshot"


def test_services_on_a_removed_node_come_back_on_a_surviving_one(tmp_path):
    """Here the registry is also restarted before the node goes: bob's service answers snapshot() only once,
    so its restored state comes from the snapshot the restarted registry read back from disk."""
    check(lose_a_node(tmp_path, "graceful"))


def test_services_come_back_after_a_node_is_killed_without_warning(tmp_path):
    """Raylet and workers SIGKILLed: Ray first says only "unavailable", and marks the node dead after its
    health checks fail; the registry waits for that instead of restarting a host that may still run."""
    check(lose_a_node(tmp_path, "kill"))
