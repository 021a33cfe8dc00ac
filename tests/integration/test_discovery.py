"""Service discovery end to end: registrations with a TTL, label filters, grants between tenants,
cross-tenant calls through the gateway, and `solo.discover` inside a service (direct calls)."""
from __future__ import annotations

import time

import pytest

from solo import NotFound, PermissionDenied, SoloClient, SoloError
from tests.conftest import source
from tests.conftest import wait_for as _wait_for

KV = source("""
    class Kv:
        def __init__(self):
            self.data = {}

        def put(self, key, value):
            self.data[key] = value
            return True

        def get(self, key):
            return self.data.get(key)

        def which(self):
            return "{tag}"

        def snapshot(self):
            return self.data

        def restore(self, state):
            self.data = state
""")

RELAY = source("""
    import solo

    class Relay:
        def __init__(self):
            self.kv = solo.discover("{target}"{owner})

        def get(self, key):
            return self.kv.call("get", key)

        async def aget(self, key):
            return await self.kv.acall("get", key)

        def which(self):
            return self.kv.call("which")

        def many(self, n):
            for i in range(n):
                self.kv.call("put", f"k{{i}}", i)
            return n
""")


def kv(tag: str = "v1") -> str:
    return KV.replace("{tag}", tag)


def relay(target: str, owner: str = "") -> str:
    return RELAY.format(target=target, owner=f", owner={owner!r}" if owner else "")


def wait_for(predicate, timeout=20.0, **options):
    return _wait_for(predicate, timeout, **options)


def test_deployed_services_are_discoverable_with_their_labels(alice, name):
    alice.deploy(kv(), name, labels={"tier": "cache", "zone": "a"})
    try:
        found = alice.discover(name)
        assert [(e["name"], e["kind"], e["version"], e["labels"]) for e in found] == \
            [(name, "service", "1", {"tier": "cache", "zone": "a"})]
        assert alice.discover(name, labels={"tier": "cache"})
        assert alice.discover(name, labels={"tier": "db"}) == []
        assert name in {e["name"] for e in alice.discover()}
    finally:
        alice.stop(name, remove=True)
    assert alice.discover(name) == []


def test_a_registration_lives_while_it_heartbeats_and_expires_with_an_event(alice, name):
    first = alice.register(name, address="10.1.2.3:9000", version="7", labels={"role": "primary"}, ttl_seconds=1.0)
    second = alice.register(name, address="10.1.2.4:9000", labels={"role": "replica"}, ttl_seconds=30)
    assert {e["address"] for e in alice.discover(name)} == {"10.1.2.3:9000", "10.1.2.4:9000"}
    assert [e["address"] for e in alice.discover(name, labels={"role": "replica"})] == ["10.1.2.4:9000"]
    for _ in range(4):  # heartbeats keep it
        time.sleep(0.5)
        alice.register(name, address="10.1.2.3:9000", version="7", labels={"role": "primary"}, ttl_seconds=1.0,
                       instance_id=first["instance_id"])
    assert len(alice.discover(name)) == 2
    wait_for(lambda: [e["address"] for e in alice.discover(name)] == ["10.1.2.4:9000"], timeout=10)
    expired = wait_for(lambda: [e for e in alice.events(subject=name) if e["type"] == "discovery.expired"])
    assert expired[0]["payload"]["instance_id"] == first["instance_id"]
    alice.deregister(name, second["instance_id"])
    assert alice.discover(name) == []
    with pytest.raises(NotFound):
        alice.deregister(name, second["instance_id"])


def test_discovery_is_tenant_scoped_until_the_owner_grants(solo, operator, alice, bob, name):
    alice.deploy(kv(), name)
    alice.register(f"{name}-ext", address="10.0.0.9:1", ttl_seconds=30)
    try:
        alice.call(name, "put", "k", "secret")
        assert bob.discover(name) == []  # bob's own namespace has no such service
        assert bob.discover(name, owner="alice") == []  # the same answer as for a service that does not exist
        assert bob.discover(f"{name}-ext", owner="alice") == [] == bob.discover("nothing-here", owner="alice")
        with pytest.raises(NotFound) as err:
            bob.call(f"alice/{name}", "get", "k")
        with pytest.raises(NotFound) as missing:
            bob.call("alice/nothing-here", "get", "k")
        assert str(err.value).replace(name, "X") == str(missing.value).replace("nothing-here", "X")
        assert name not in {e["name"] for e in bob.discover()}
        with pytest.raises(NotFound):
            bob.grant(name, "bob")  # only the owner can grant, and bob owns no such service
        alice.grant(name, "bob")
        assert [(e["owner"], e["name"]) for e in bob.discover(name, owner="alice")] == [("alice", name)]
        assert [(e["owner"], e["name"]) for e in bob.discover(owner="alice")] == [("alice", name)]
        assert "alice" not in {e["owner"] for e in bob.discover()}  # a grant never pushes into bob's own list
        assert bob.call(f"alice/{name}", "get", "k") == "secret"
        with pytest.raises(NotFound):
            bob.call(f"alice/{name}-other", "get", "k")
        with SoloClient(solo.address, operator.mint_token("carol")) as carol:  # a grant is for one tenant
            with pytest.raises(NotFound):
                carol.call(f"alice/{name}", "get", "k")
        assert alice.grants()["given"] == [{"service": name, "to_tenant": "bob"}]
        assert {"owner": "alice", "service": name} in bob.grants()["received"]
        alice.revoke_grant(name, "bob")
        wait_for(lambda: _refused(lambda: bob.call(f"alice/{name}", "get", "k")))
        read_only = operator.mint_token("alice", rights=["discover", "invoke"])
        with SoloClient(solo.address, read_only) as limited, pytest.raises(PermissionDenied):
            limited.grant(name, "bob")
    finally:
        alice.stop(name, remove=True)


def _refused(call) -> bool:
    try:
        call()
    except NotFound:
        return True
    return False


def test_a_service_calls_another_directly_through_solo_discover(alice, name):
    target = f"{name}-kv"
    alice.deploy(kv("v1"), target)
    alice.deploy(relay(target), name)
    try:
        alice.call(target, "put", "a", 1)
        assert alice.call(name, "get", "a") == 1
        assert alice.call(name, "aget", "a") == 1
        assert alice.call(name, "many", 50) == 50
        assert alice.call(target, "get", "k49") == 49
        alice.swap(target, kv("v2"), watch_seconds=0)  # the handle follows the swap
        assert alice.call(name, "which") == "v2" and alice.call(name, "get", "a") == 1
    finally:
        alice.stop(name, remove=True)
        alice.stop(target, remove=True)


def test_solo_discover_cannot_reach_another_tenants_service_without_a_grant(alice, bob, name):
    target = f"{name}-kv"
    alice.deploy(kv(), target)
    try:
        with pytest.raises(SoloError, match="not found"):
            bob.deploy(relay(target, owner="alice"), name)  # __init__ resolves: refused
        alice.grant(target, "bob")
        bob.deploy(relay(target, owner="alice"), name)
        alice.call(target, "put", "x", "shared")
        assert bob.call(name, "get", "x") == "shared"
        bob.stop(name, remove=True)
    finally:
        alice.stop(target, remove=True)
