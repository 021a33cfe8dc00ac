"""solo.registry.discovery (pure): registrations with a TTL and heartbeats, grants, visibility."""
from __future__ import annotations

import pytest

from solo.errors import InvalidRequest, NotFound
from solo.registry.discovery import Discovery, matches


def test_a_registration_heartbeats_with_its_instance_id_and_expires_after_its_ttl():
    d = Discovery()
    first, new = d.register("acme", "db", "", "1", "10.0.0.1:5432", {"role": "primary"}, 10, now=100)
    assert new and first.expires_at == 110 and first.instance
    again, new = d.register("acme", "db", first.instance, "2", "10.0.0.1:5432", {"role": "primary"}, 10, now=105)
    assert not new and again is first and first.expires_at == 115 and first.version == "2"
    other, _ = d.register("acme", "db", "", "1", "10.0.0.2:5432", {}, 30, now=105)
    assert d.expire(now=114) == []
    assert [r.instance for r in d.expire(now=115)] == [first.instance]
    assert [r.instance for r in d.registered("acme", "db")] == [other.instance]
    back, new = d.register("acme", "db", first.instance, "2", "10.0.0.1:5432", {}, 10, now=120)
    assert new and back.instance == first.instance  # a heartbeat after expiry (or a registry restart) re-registers


def test_registrations_are_per_tenant_and_bad_ttls_are_refused():
    d = Discovery()
    mine, _ = d.register("acme", "db", "", "", "a:1", {}, 5, now=0)
    assert d.registered("beta") == []
    with pytest.raises(NotFound):
        d.deregister("beta", "db", mine.instance)
    for ttl in (0, -1, 86_401):
        with pytest.raises(InvalidRequest, match="ttl_seconds"):
            d.register("acme", "db", "", "", "a:1", {}, ttl, now=0)
    d.deregister("acme", "db", mine.instance)
    assert d.registered("acme") == []


def test_a_grant_makes_one_service_visible_to_one_tenant():
    d = Discovery()
    assert d.visible("acme", "acme", "kv") and not d.visible("beta", "acme", "kv")
    assert d.grant("acme", "kv", "beta") and not d.grant("acme", "kv", "beta")
    assert d.visible("beta", "acme", "kv")
    assert not d.visible("beta", "acme", "other") and not d.visible("gamma", "acme", "kv")
    assert d.granted_to("acme", "kv") == ("beta",)
    assert d.exported_to("beta") == [("acme", "kv")] and d.grants_of("acme") == [("kv", "beta")]
    with pytest.raises(InvalidRequest):
        d.grant("acme", "kv", "acme")
    assert d.revoke("acme", "kv", "beta") and not d.revoke("acme", "kv", "beta")
    assert not d.visible("beta", "acme", "kv") and d.grants == {}


def test_label_filters_need_every_label():
    assert matches({"a": "1", "b": "2"}, {"a": "1"}) and matches({"a": "1"}, {})
    assert not matches({"a": "1"}, {"a": "1", "b": "2"}) and not matches({"a": "2"}, {"a": "1"})


def test_grants_are_folded_from_events_and_leave_with_a_removed_service(tmp_path):
    from solo.registry.rebuild import fold, load_grants, write_checkpoint

    def ev(i, kind, subject="kv", tenant="acme", **payload):
        return {"id": i, "time": 1.0 * i, "tenant": tenant, "type": kind, "subject": subject, "payload": payload}

    grants: set = set()
    views = fold([ev(1, "service.deploying", spec="f", version="1", generation=1),
                  ev(2, "discovery.granted", service="kv", to_tenant="beta"),
                  ev(3, "discovery.granted", service="kv", to_tenant="gamma"),
                  ev(4, "discovery.grant_revoked", service="kv", to_tenant="gamma")], {}, grants)
    assert grants == {("acme", "kv", "beta")}
    write_checkpoint(tmp_path, 4, views, grants)
    assert load_grants(tmp_path) == {("acme", "kv", "beta")}
    fold([ev(5, "service.removed")], views, grants)
    assert grants == set()
