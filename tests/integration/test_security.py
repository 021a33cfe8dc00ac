"""Capability tokens at the gateway, over real gRPC: every attack must fail, the normal paths work."""
from __future__ import annotations

import base64
import json
import time

import biscuit_auth as biscuit
import pytest

from solo import NotFound, PermissionDenied, SoloClient, SoloError, Unauthenticated
from solo.events import read_events
from solo.security.capabilities import attenuate, mint
from solo.security.keys import KeyRing
from tests.conftest import EXAMPLES


def client(solo, token):
    return SoloClient(solo.address, token)


def keys(solo):
    return KeyRing(solo.supervisor.config.data_dir / "keys")


def test_a_token_signed_by_another_key_is_refused(solo, tmp_path):
    other = KeyRing(tmp_path / "keys")
    key_id, private = other.private_key()
    forged = mint(private, key_id, "alice", ["discover"], 3600, operator=True).token
    with client(solo, forged) as c, pytest.raises(Unauthenticated, match="invalid token"):
        c.list()


def test_a_tampered_token_is_refused(solo, alice):
    raw = bytearray(base64.urlsafe_b64decode(alice.token))
    raw[raw.find(b"alice"):raw.find(b"alice") + 5] = b"bob\x00\x00"
    with client(solo, base64.urlsafe_b64encode(bytes(raw)).decode()) as c, \
            pytest.raises(Unauthenticated, match="invalid token"):
        c.list()


def test_an_expired_token_is_refused(solo, operator):
    short = operator.mint("alice", ttl_seconds=1)["token"]
    with client(solo, short) as c:
        assert c.whoami()["tenant"] == "alice"
        time.sleep(2.2)
        with pytest.raises(Unauthenticated, match="expired"):
            c.list()


def test_attenuated_tokens_never_exceed_their_parent(solo, alice, name):
    alice.deploy(EXAMPLES / "echo.py", name)
    alice.deploy(EXAMPLES / "echo.py", name + "-other")
    ring = keys(solo)
    only_echo = attenuate(alice.token, ring.public_key, services=[name], methods=["echo"], rights=["invoke"])
    with client(solo, only_echo) as c:
        assert c.call(name, "echo", "hi") == "hi"
        with pytest.raises(PermissionDenied, match="does not allow invoke on"):
            c.call(name + "-other", "echo", "hi")  # service Y
        with pytest.raises(PermissionDenied, match="method 'ping'"):
            c.call(name, "ping")  # a method it does not list
        for attempt in (lambda: c.stop(name), lambda: c.list(), lambda: c.events(),
                        lambda: c.deploy(EXAMPLES / "echo.py", name, replace=True),
                        lambda: c.mint_token("alice")):
            with pytest.raises(PermissionDenied):
                attempt()
        assert c.whoami()["tenant"] == "alice"
    # a block that adds rights or another tenant grants nothing
    parsed = biscuit.Biscuit.from_base64(only_echo, ring.public_key)
    forged = parsed.append(biscuit.BlockBuilder('right("stop"); tenant("bob"); operator(true);')).to_base64()
    with client(solo, forged) as c:
        for attempt in (lambda: c.stop(name), c.whoami):
            with pytest.raises(Unauthenticated, match="does not accept"):
                attempt()
    alice.stop(name, remove=True)
    alice.stop(name + "-other", remove=True)


def test_a_tenant_mints_only_narrower_tokens_for_itself(solo, operator):
    limited = operator.mint("dora", rights=["invoke", "mint", "discover"])["token"]
    with client(solo, limited) as dora:
        child = dora.mint("dora", rights=["discover"])
        assert child["rights"] == ["discover"]
        with pytest.raises(PermissionDenied, match="does not have the rights \\['deploy'\\]"):
            dora.mint("dora", rights=["deploy"])
        assert set(dora.mint("dora")["rights"]) == {"invoke", "mint", "discover"}  # default: at most its own
        with pytest.raises(PermissionDenied, match="own tenant"):
            dora.mint("erin")


def test_revocation_takes_effect_on_every_gateway_within_a_second(solo, operator):
    from solo.gateway.server import start_gateway
    from solo.security.tokens import authenticator

    config = solo.supervisor.config.model_copy(update={"gateway": solo.supervisor.config.gateway.model_copy(
        update={"port": 0, "metrics_port": 0})})
    second = solo.run(start_gateway(config, solo.supervisor.registry_handle(),
                                    authenticator(config, keys(solo)), solo.supervisor.event_log_handle()))
    try:
        minted = operator.mint("frank", description="to be revoked")
        with SoloClient(f"127.0.0.1:{second.port}", minted["token"]) as via_second:
            assert via_second.whoami()["tenant"] == "frank"  # verified and cached on the second gateway
            operator.revoke_token(minted["revocation_id"], reason="test")  # through the first gateway
            revoked_at = time.monotonic()
            while True:
                try:
                    via_second.whoami()
                except Unauthenticated as exc:
                    assert "revoked" in exc.message
                    break
                assert time.monotonic() - revoked_at < 5, "the second gateway still accepts a revoked token"
                time.sleep(0.02)
            print(f"revocation reached the second gateway after {time.monotonic() - revoked_at:.3f} s")
    finally:
        solo.run(second.stop(0.5))


def test_revoking_is_scoped_to_the_tenant_and_recorded(solo, operator, alice, bob):
    mine = alice.mint("alice", description="alice's own")
    bobs = operator.mint("bob")
    with pytest.raises(NotFound, match="no token with that revocation id"):
        alice.revoke_token(bobs["revocation_id"])  # the same answer as for an id nobody minted
    with pytest.raises(NotFound):
        alice.revoke_token("ab" * 64)
    with pytest.raises(NotFound):
        alice.revoke_token(token=bobs["token"])
    alice.revoke_token(token=mine["token"], reason="rotating")
    listed = {t["revocation_id"]: t for t in alice.list_tokens()}
    assert listed[mine["revocation_id"]]["revoked"] is True and bobs["revocation_id"] not in listed
    with pytest.raises(PermissionDenied, match="own tokens"):
        alice.list_tokens("bob")
    rows = read_events(solo.supervisor.config.data_dir, tenant="alice", type=["token.minted", "token.revoked"])
    text = repr(rows.to_pylist())
    assert mine["revocation_id"] in text and mine["token"] not in text  # ids recorded, tokens never


def test_refusals_are_summarised_not_logged_per_call(solo):
    with client(solo, "garbage") as c:
        for _ in range(25):
            with pytest.raises(Unauthenticated):
                c.list()
    data_dir = solo.supervisor.config.data_dir
    deadline = time.monotonic() + 15  # summaries are written every 10 s
    while time.monotonic() < deadline:
        rows = read_events(data_dir, type="auth.denied").to_pylist()
        counts = [r for r in rows if '"UNAUTHENTICATED discover"' in r["payload"]]
        if sum(json.loads(r["payload"])["counts"]["UNAUTHENTICATED discover"] for r in counts) >= 25:
            break
        time.sleep(0.5)
    else:
        pytest.fail("no auth.denied summary with the 25 refusals")
    assert len(counts) <= 3  # aggregated: a summary per 10 s window, not an event per refusal


def test_an_attenuated_token_is_recorded_when_it_first_reaches_the_server(solo, alice):
    narrow = attenuate(alice.token, keys(solo).public_key, rights=["discover"])
    with client(solo, narrow) as c:
        for _ in range(3):
            c.list()
    rid = biscuit.UnverifiedBiscuit.from_base64(narrow).revocation_ids[-1]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = [r for r in read_events(solo.supervisor.config.data_dir, tenant="alice",
                                       type="token.attenuated").to_pylist() if rid in r["payload"]]
        if rows:
            break
        time.sleep(0.5)
    assert len(rows) == 1


def test_a_token_over_its_rate_gets_resource_exhausted_with_retry_after(solo, operator):
    from solo import Overloaded

    token = operator.mint("ratey")["token"]  # [limits.tenant_token_rates] ratey: 2/s, bursts of 3
    derived = attenuate(token, keys(solo).public_key, rights=["discover"])
    with client(solo, token) as c, client(solo, derived) as d:
        c.whoami()
        c.whoami()
        d.list()  # an attenuated token draws from its root's bucket: no fresh bucket by deriving
        with pytest.raises(Overloaded, match="rate limit") as err:
            c.whoami()
        assert 0 < err.value.retry_after <= 0.5
        time.sleep(err.value.retry_after + 0.05)
        assert c.whoami()["tenant"] == "ratey"
    with client(solo, operator.mint("ratey")["token"]) as fresh:
        assert fresh.whoami()["tenant"] == "ratey"  # another root token, another bucket


def test_an_attenuated_token_cannot_mint_and_a_tenant_mint_never_outlives_its_minter(solo, operator):
    short = operator.mint("gina", ttl_seconds=600)["token"]
    with client(solo, short) as gina:
        with pytest.raises(SoloError, match="past your own token's expiry"):
            gina.mint("gina", ttl_seconds=3600)
        child = gina.mint("gina")
        assert child["expires_at"] <= time.time() + 603  # no later than the minting token (whole seconds)
    narrowed = attenuate(short, keys(solo).public_key, rights=["mint"], ttl_seconds=60)
    with client(solo, narrowed) as c, pytest.raises(PermissionDenied, match="attenuated token cannot mint"):
        c.mint("gina")
    op_narrow = attenuate(operator.token, keys(solo).public_key, rights=["mint"], ttl_seconds=60)
    with client(solo, op_narrow) as c, pytest.raises(PermissionDenied, match="attenuated token cannot mint"):
        c.mint("gina", operator=True)


def test_operator_tokens_are_invisible_and_irrevocable_to_tenant_default(solo, operator):
    op = operator.mint("default", operator=True, description="second operator")
    plain_default = operator.mint("default")["token"]
    with client(solo, plain_default) as d:
        assert op["revocation_id"] not in [t["revocation_id"] for t in d.list_tokens()]
        with pytest.raises(NotFound):
            d.revoke_token(op["revocation_id"])
        with pytest.raises(NotFound):
            d.revoke_token(token=op["token"])
    operator.revoke_token(op["revocation_id"])


def test_a_watch_ends_when_its_token_is_revoked(solo, operator):
    import threading

    minted = operator.mint("hank")
    ended: list[BaseException] = []

    def watch():
        with client(solo, minted["token"]) as h:
            try:
                for _ in h.watch(after_id=0):
                    pass
            except BaseException as exc:  # noqa: BLE001 - what ended it is the assertion
                ended.append(exc)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(1.0)
    operator.revoke_token(minted["revocation_id"])
    watcher.join(10)
    assert ended and isinstance(ended[0], Unauthenticated) and "revoked" in str(ended[0])


def test_more_root_tokens_do_not_multiply_a_tenants_rate(solo, operator):
    from solo import Overloaded

    first = operator.mint("ratet")["token"]  # [limits.tenant_rates] ratet: 2/s, bursts of 3, all tokens together
    with client(solo, first) as a:
        second = a.mint("ratet")["token"]  # a tenant may mint tokens for itself: each is a new root
        with client(solo, second) as b:
            b.whoami()
            a.whoami()
            with pytest.raises(Overloaded, match="rate limit of this tenant") as err:
                b.whoami()
            assert 0 < err.value.retry_after <= 0.6


def test_a_source_past_its_budget_of_refused_authentications_is_refused_before_any_check(solo, alice):
    """Bad tokens cost a signature check each; past [limits] auth_failures_burst (100) from one address,
    tokens not already known good are refused at once. A token used just before still works."""
    from solo import Overloaded

    alice.list()  # known good from now on (the verifier's cache)
    refused = []
    with client(solo, "garbage") as c:
        for _ in range(200):
            try:
                c.list()
            except (Unauthenticated, Overloaded) as exc:
                refused.append(type(exc))
    assert Overloaded in refused and refused[0] is Unauthenticated
    assert refused.count(Unauthenticated) <= 120
    assert isinstance(alice.list(), list)
    deadline = time.monotonic() + 30  # leave the budget as found: later tests mint new tokens from here
    with client(solo, "garbage") as c:
        while time.monotonic() < deadline:
            try:
                c.list()
            except Unauthenticated:
                break
            except Overloaded:
                time.sleep(0.2)
    time.sleep(1.0)
