"""Tenants are isolated: same names without conflict, and no way to see, call or stop another's."""
from __future__ import annotations

import grpc
import pytest

from solo import NotFound, PermissionDenied, SoloClient, Unauthenticated
from solo.events import read_events
from tests.conftest import wait_for


def test_same_name_in_two_tenants(alice, bob, name):
    alice.deploy("class A:\n    def who(self):\n        return 'alice'\n", name)
    bob.deploy("class B:\n    def who(self):\n        return 'bob'\n", name)
    assert alice.call(name, "who") == "alice"
    assert bob.call(name, "who") == "bob"
    alice.stop(name, remove=True)
    assert bob.call(name, "who") == "bob"  # alice's stop did not touch bob's service
    bob.stop(name, remove=True)


def test_another_tenants_service_is_indistinguishable_from_a_missing_one(alice, bob, name):
    bob.deploy("class B:\n    def secret(self):\n        return 42\n", name)
    missing = f"{name}-missing"
    for target in (name, missing):
        errors = []
        for attempt in (lambda t=target: alice.get(t), lambda t=target: alice.call(t, "secret"),
                        lambda t=target: alice.stop(t), lambda t=target: list(alice.stream(t, "secret"))):
            with pytest.raises(NotFound) as err:
                attempt()
            errors.append(err.value.message.replace(target, "<name>"))
        if target == name:
            seen = errors
        else:
            assert errors == seen  # same answer for "exists elsewhere" and "does not exist"
    assert name not in [s["name"] for s in alice.list()]
    assert bob.call(name, "secret") == 42
    # alice deploying the same name creates her own service; bob's is untouched
    alice.deploy("class X:\n    def secret(self):\n        return 1\n", name, replace=True)
    assert alice.call(name, "secret") == 1
    assert bob.call(name, "secret") == 42
    alice.stop(name, remove=True)
    bob.stop(name, remove=True)


def test_metrics_are_per_tenant(alice, bob, name):
    bob.deploy("class B:\n    def f(self):\n        return 1\n", name)
    bob.call(name, "f")
    assert name not in [m["service"] for m in alice.metrics()["services"]]
    assert name in [m["service"] for m in bob.metrics()["services"]]
    bob.stop(name, remove=True)


def test_events_carry_the_tenant_and_never_the_token(solo, alice, name):
    alice.deploy("class A:\n    def f(self):\n        return 1\n", name, env={"API_KEY": "s3cr3t-value"})
    alice.stop(name, remove=True)
    def written():
        found = read_events(solo.supervisor.config.data_dir, subject=name).to_pylist()
        return found if len(found) >= 3 else None
    rows = wait_for(written)
    assert {r["tenant"] for r in rows} == {"alice"}
    assert [r["type"] for r in rows] == ["service.deploying", "service.started", "service.removed"]
    assert all(r["principal"].startswith("tenant:alice/token:") for r in rows)
    dump = repr(rows)
    assert "s3cr3t-value" not in dump and alice.token not in dump and "API_KEY" in dump


def test_no_token_garbage_token_and_tenant_minting(solo, alice):
    with SoloClient(solo.address, "") as anonymous:
        with pytest.raises(Unauthenticated, match="no credentials"):
            anonymous.list()
    with SoloClient(solo.address, "solo_not-a-real-token") as garbage:
        with pytest.raises(Unauthenticated, match="invalid token"):
            garbage.list()
    with pytest.raises(PermissionDenied, match="only mint tokens for its own tenant"):
        alice.mint_token("mallory")
    with pytest.raises(PermissionDenied, match="operator"):
        alice.mint_token("alice", operator=True)
    channel = grpc.insecure_channel(solo.address)
    from solo._proto import solo_pb2 as pb
    from solo._proto import solo_pb2_grpc
    with pytest.raises(grpc.RpcError) as err:
        solo_pb2_grpc.GatewayStub(channel).ListServices(pb.ListServicesRequest(),
                                                        metadata=(("authorization", "Basic abc"),)).next()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_tenant_in_the_body_is_never_trusted(alice, operator):
    # MintToken is the only RPC with a tenant field; every other RPC acts for the token's tenant.
    assert {k: v for k, v in alice.whoami().items() if k != "token_id"} == {"tenant": "alice", "operator": False}
    assert operator.whoami()["operator"] is True

