"""Capability tokens against real Biscuit crypto: minting, attenuation, attacks, expiry, keys, the cache."""
from __future__ import annotations

import json
import os
import stat

import biscuit_auth as biscuit
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solo.errors import InvalidRequest, PermissionDenied, Unauthenticated
from solo.security.capabilities import READ_ONLY, RIGHTS, Request, attenuate, authorize, inspect, mint, parse
from solo.security.keys import KeyRing
from solo.security.verifier import RevocationSet, TokenVerifier

NOW = 1_800_000_000.0
DAY = 86_400.0


@pytest.fixture
def ring(tmp_path):
    return KeyRing(tmp_path / "keys")


def token_for(ring, tenant="acme", rights=RIGHTS, ttl=DAY, operator=False):
    key_id, private = ring.private_key()
    return mint(private, key_id, tenant, rights, ttl, operator=operator, now=NOW).token


def allowed(ring, token, request, now=NOW + 60):
    return authorize(parse(token, ring.public_key), request, now)


def test_the_root_key_is_private_and_has_an_id(tmp_path, ring):
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    for name in ("keys.json", "root-1.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode) == 0o600
    assert ring.active == 1 and inspect(token_for(ring))["key_id"] == 1
    assert KeyRing(tmp_path / "keys").public_keys() == ring.public_keys()  # kept across starts


def test_a_minted_token_allows_its_rights_for_its_tenant_only(ring):
    token = token_for(ring, rights=["invoke", "discover"])
    grant = allowed(ring, token, Request("invoke", "kv", "get"))
    assert (grant.tenant, grant.operator) == ("acme", False)
    with pytest.raises(PermissionDenied, match="does not allow deploy"):
        allowed(ring, token, Request("deploy", "kv"))
    assert allowed(ring, token, Request("whoami")).tenant == "acme"


@pytest.mark.parametrize("garbage", ["", "x", "solo_abc", "A" * 400, "EgUKA2Zvbw=="])
def test_garbage_is_unauthenticated(ring, garbage):
    with pytest.raises(Unauthenticated, match="invalid token"):
        parse(garbage, ring.public_key)


def test_a_token_signed_by_another_key_is_refused(tmp_path, ring):
    other = KeyRing(tmp_path / "other")
    with pytest.raises(Unauthenticated, match="invalid token"):
        parse(token_for(other), ring.public_key)


def test_a_tampered_block_is_refused(ring):
    token = token_for(ring, rights=["invoke"])
    raw = bytearray(biscuit.Biscuit.from_base64(token, ring.public_key).to_bytes())
    index = raw.find(b"invoke")
    raw[index:index + 6] = b"deploy"  # rewrite the right inside the signed block
    import base64
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(Unauthenticated, match="invalid token"):
        parse(tampered, ring.public_key)


def test_facts_appended_by_a_holder_grant_nothing(ring):
    parsed = parse(token_for(ring, rights=["invoke"]), ring.public_key)
    forged = parsed.append(biscuit.BlockBuilder('right("stop"); tenant("bob"); operator(true);'))
    with pytest.raises(Unauthenticated, match="does not accept"):
        parse(forged.to_base64(), ring.public_key)  # refused before any Datalog runs
    # and even past that gate, the policy trusts only the first block: still acme, still no operator
    with pytest.raises(PermissionDenied):
        authorize(forged, Request("stop", "kv"), NOW + 60)
    grant = authorize(forged, Request("invoke", "kv", "get"), NOW + 60)
    assert (grant.tenant, grant.operator) == ("acme", False)


@pytest.mark.parametrize("block", [
    "f(0); f(1); check if f($a), f($b), $a + $b == -1;",             # costly Datalog a holder could add
    'check if [0, 1, 2].all($x -> [0, 1, 2].all($y -> $x != $y + 9));',
    'check if service($s), $s == "kv";',                               # a check attenuate never writes
    'check if time($t), $t <= 2030-01-01T00:00:00Z or true;',
    'rule($x) <- right($x);',
])
def test_only_the_checks_attenuate_writes_are_accepted_in_appended_blocks(ring, block):
    parsed = parse(token_for(ring), ring.public_key)
    with pytest.raises(Unauthenticated, match="does not accept"):
        parse(parsed.append(biscuit.BlockBuilder(block)).to_base64(), ring.public_key)


def test_oversized_tokens_and_too_many_blocks_are_refused(ring):
    with pytest.raises(Unauthenticated, match="longer than"):
        parse("A" * 9000, ring.public_key)
    token = token_for(ring)
    for _ in range(16):
        token = attenuate(token, ring.public_key, ttl_seconds=3000, now=NOW)
    with pytest.raises(Unauthenticated, match="at most 16"):
        parse(token, ring.public_key)


def test_the_first_block_says_tenant_operator_and_expiry(ring):
    from solo.security.capabilities import authority
    found = authority(parse(token_for(ring, tenant="dora", ttl=3600, operator=True), ring.public_key))
    assert (found.tenant, found.operator, found.expires_at) == ("dora", True, NOW + 3600)


def test_attenuation_inputs_are_checked(ring):
    token = token_for(ring)
    with pytest.raises(InvalidRequest, match="service name"):
        attenuate(token, ring.public_key, services=['kv"); right("stop'])
    with pytest.raises(InvalidRequest, match="method names"):
        attenuate(token, ring.public_key, methods=["_private"])


def test_expiry_is_enforced(ring):
    token = token_for(ring, ttl=3600)
    allowed(ring, token, Request("invoke", "kv", "get"), now=NOW + 3599)
    with pytest.raises(Unauthenticated, match="expired"):
        allowed(ring, token, Request("invoke", "kv", "get"), now=NOW + 3602)


def test_attenuation_narrows_service_method_rights_and_expiry(ring):
    token = token_for(ring)
    narrow = attenuate(token, ring.public_key, services=["kv"], methods=["get"], now=NOW)
    allowed(ring, narrow, Request("invoke", "kv", "get"))
    for request in (Request("invoke", "kv", "put"), Request("invoke", "other", "get"), Request("discover"),
                    Request("stop", "other")):
        with pytest.raises(PermissionDenied):
            allowed(ring, narrow, request)
    allowed(ring, narrow, Request("stop", "kv"))  # only service and method were narrowed
    read_only = attenuate(token, ring.public_key, rights=READ_ONLY, now=NOW)
    allowed(ring, read_only, Request("read_events"))
    with pytest.raises(PermissionDenied, match="does not allow invoke"):
        allowed(ring, read_only, Request("invoke", "kv", "get"))
    short = attenuate(token, ring.public_key, ttl_seconds=60, now=NOW)
    with pytest.raises(Unauthenticated, match="expired"):
        allowed(ring, short, Request("invoke", "kv", "get"), now=NOW + 120)
    with pytest.raises(Unauthenticated, match="expired"):  # not a second more: dates are rounded up
        allowed(ring, short, Request("invoke", "kv", "get"), now=NOW + 60.2)
    assert allowed(ring, short, Request("whoami"), now=NOW + 30).tenant == "acme"


def test_attenuation_needs_a_restriction_and_known_rights(ring):
    token = token_for(ring)
    with pytest.raises(InvalidRequest, match="nothing to restrict"):
        attenuate(token, ring.public_key)
    with pytest.raises(InvalidRequest, match="unknown rights"):
        attenuate(token, ring.public_key, rights=["root"])


def test_a_rotated_key_keeps_old_tokens_until_the_cutoff(tmp_path, ring):
    old = token_for(ring)
    new_id = ring.rotate(cutoff_seconds=3600)
    assert new_id == 2 and inspect(token_for(ring))["key_id"] == 2
    other_process = KeyRing(tmp_path / "keys")
    parse(old, lambda k: other_process.public_key(k))  # still accepted
    info = json.loads((tmp_path / "keys" / "keys.json").read_text())["keys"]["1"]
    with pytest.raises(Unauthenticated, match="retired"):
        parse(old, lambda k: other_process.public_key(k, now=info["valid_until"] + 1))


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def test_the_cache_never_lets_a_revoked_or_expired_token_through(ring):
    clock = Clock(NOW)
    revoked = RevocationSet()
    verifier = TokenVerifier(ring, revoked, cache_seconds=10, clock=clock)
    token = token_for(ring, ttl=30)
    request = Request("invoke", "kv", "get")
    verifier.verify(token, request)
    assert len(verifier._cache) == 1  # a steady caller is served from the cache
    clock.t = NOW + 5
    assert verifier.verify(token, request).tenant == "acme"
    revoked.add(inspect(token)["revocation_ids"][:1])
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(token, request)  # cached, and still refused at once
    fresh = token_for(ring, ttl=25)
    clock.t = NOW + 20
    verifier.verify(fresh, request)  # expires within the cache window: answered, but not cached
    clock.t = NOW + 26
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(fresh, request)


def test_a_derived_token_is_revoked_with_its_parent_and_not_the_other_way(ring):
    revoked = RevocationSet()
    verifier = TokenVerifier(ring, revoked, clock=Clock(NOW))
    parent = token_for(ring)
    child = attenuate(parent, ring.public_key, services=["kv"], now=NOW)
    revoked.add([inspect(child)["revocation_ids"][-1]])
    verifier.verify(parent, Request("discover"))
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(child, Request("invoke", "kv", "get"))
    revoked.add([inspect(parent)["revocation_ids"][0]])
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(parent, Request("discover"))


REQUESTS = st.builds(Request, st.sampled_from(RIGHTS + ("whoami",)), st.sampled_from(["", "kv", "db", "web"]),
                     st.sampled_from(["", "get", "put"]), st.sampled_from(["", "db/pw", "web/key"]))
STEPS = st.lists(st.fixed_dictionaries({}, optional={
    "services": st.lists(st.sampled_from(["kv", "db", "web"]), max_size=3),
    "methods": st.lists(st.sampled_from(["get", "put"]), max_size=2),
    "rights": st.lists(st.sampled_from(RIGHTS), max_size=4),
    "ttl_seconds": st.sampled_from([10.0, 600.0, 7200.0]),
    "secrets": st.lists(st.sampled_from(["db/*", "web/key", "x"]), min_size=1, max_size=2),
}).filter(bool), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(root_rights=st.lists(st.sampled_from(RIGHTS), min_size=1, max_size=5, unique=True), steps=STEPS,
       request=REQUESTS, at=st.sampled_from([0.0, 30.0, 3000.0, 90_000.0]))
def test_an_attenuation_chain_never_grants_more_than_its_root(tmp_path_factory, root_rights, steps, request, at):
    ring = _property_ring(tmp_path_factory)
    root = token_for(ring, rights=root_rights, ttl=DAY)
    chain = root
    for step in steps:
        chain = attenuate(chain, ring.public_key, now=NOW, **step)

    def outcome(token):
        try:
            return allowed(ring, token, request, now=NOW + at)
        except (PermissionDenied, Unauthenticated):
            return None

    derived, parent = outcome(chain), outcome(root)
    if derived is not None:  # whatever the chain allows, the root allows too, for the same tenant
        assert parent is not None and parent.tenant == derived.tenant and not derived.operator


_RINGS: dict = {}


def _property_ring(factory):
    if "ring" not in _RINGS:
        _RINGS["ring"] = KeyRing(factory.mktemp("property") / "keys")
    return _RINGS["ring"]


def test_secret_rights_narrow_by_key_pattern(ring):
    token = token_for(ring)
    scoped = attenuate(token, ring.public_key, secrets=["db/*", "api-key"], now=NOW)
    allowed(ring, scoped, Request("secrets.read", secret="db/password"))
    allowed(ring, scoped, Request("secrets.write", secret="api-key"))
    for key in ("api-key-2", "dbx/password", "web/db/x"):
        with pytest.raises(PermissionDenied):
            allowed(ring, scoped, Request("secrets.read", secret=key))
    allowed(ring, scoped, Request("invoke", "kv", "get"))  # other operations are not narrowed by it
    with pytest.raises(InvalidRequest, match="prefix ending in"):
        attenuate(token, ring.public_key, secrets=["d*b"])


def test_the_cache_tells_requests_apart_including_the_secret(ring):
    verifier = TokenVerifier(ring, RevocationSet(), clock=Clock(NOW))
    scoped = attenuate(token_for(ring), ring.public_key, secrets=["db/*"], now=NOW)
    verifier.verify(scoped, Request("secrets.read", secret="db/pw"))
    with pytest.raises(PermissionDenied):
        verifier.verify(scoped, Request("secrets.read", secret="web/key"))
    assert all(len(key[0]) == 16 for key in verifier._cache)  # keyed by a digest, not the token text


def test_first_seen_attenuated_tokens_are_capped_per_window():
    from solo.gateway.audit import MAX_LISTED, Audit
    from solo.security.capabilities import Grant

    audit = Audit()
    for i in range(MAX_LISTED + 50):
        audit.first_seen(Grant("acme", False, ("a" * 128, f"{i:0128x}"), 1, 2))
    rows = audit.rows()
    listed = [r for r in rows if r["subject"] != "many"]
    assert len(listed) == MAX_LISTED
    assert [r["payload"]["unlisted"] for r in rows if r["subject"] == "many"] == [50]
    assert audit.rows() == []
