"""solo.security.tokens: bearer tokens stored as hashes, resolved to a tenant."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from solo.errors import InvalidRequest, PermissionDenied, Unauthenticated
from solo.security.tokens import BearerAuthenticator, Principal, TokenStore, ensure_operator_token

OPERATOR = Principal("default", operator=True)


def auth(tmp_path) -> BearerAuthenticator:
    return BearerAuthenticator(TokenStore(tmp_path / "tokens.json"))


def bearer(token: str) -> list[tuple[str, str]]:
    return [("user-agent", "test"), ("authorization", f"Bearer {token}")]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_minted_token_authenticates_to_its_tenant(tmp_path):
    a = auth(tmp_path)
    acme, beta = a.mint(OPERATOR, "acme", "ci"), a.mint(OPERATOR, "beta")
    assert acme.startswith("solo_") and acme != beta
    principal = a.authenticate(bearer(acme))
    assert principal.tenant == "acme" and not principal.operator
    assert principal.token_id == hashlib.sha256(acme.encode()).hexdigest()[:12]
    assert a.authenticate(bearer(beta)).tenant == "beta"


def test_scheme_is_case_insensitive_and_token_whitespace_is_ignored(tmp_path):
    a = auth(tmp_path)
    token = a.mint(OPERATOR, "acme")
    assert a.authenticate([("authorization", f"bearer  {token} ")]).tenant == "acme"


def test_store_file_holds_only_hashes_and_is_private(tmp_path):
    a = auth(tmp_path)
    token = a.mint(OPERATOR, "acme", "laptop")
    path = tmp_path / "tokens.json"
    text = path.read_text()
    assert token not in text and token[len("solo_"):] not in text
    entries = json.loads(text)
    assert list(entries) == [hashlib.sha256(token.encode()).hexdigest()]
    assert entries[hashlib.sha256(token.encode()).hexdigest()]["tenant"] == "acme"
    assert mode(path) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_credentials_are_unauthenticated_saying_what_to_send(tmp_path):
    with pytest.raises(Unauthenticated, match="no credentials: send 'authorization: Bearer <token>'"):
        auth(tmp_path).authenticate([("user-agent", "x")])
    with pytest.raises(Unauthenticated, match="no credentials"):
        auth(tmp_path).authenticate([("authorization", "")])


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "solo_abc"])
def test_wrong_scheme_is_unauthenticated(tmp_path, header):
    with pytest.raises(Unauthenticated, match="expected 'Bearer <token>'"):
        auth(tmp_path).authenticate([("authorization", header)])


def test_unknown_token_is_unauthenticated(tmp_path):
    a = auth(tmp_path)
    a.mint(OPERATOR, "acme")
    with pytest.raises(Unauthenticated, match="unknown or revoked token"):
        a.authenticate(bearer("solo_not-a-real-token"))


def test_only_the_operator_can_mint(tmp_path):
    a = auth(tmp_path)
    tenant = a.authenticate(bearer(a.mint(OPERATOR, "acme")))
    with pytest.raises(PermissionDenied, match="only the operator can mint tokens"):
        a.mint(tenant, "acme")


@pytest.mark.parametrize("tenant", ["Acme", "", "a/b", "1acme"])
def test_minting_for_an_invalid_tenant_name_is_rejected(tmp_path, tenant):
    with pytest.raises(InvalidRequest, match="invalid tenant name"):
        auth(tmp_path).mint(OPERATOR, tenant)
    assert not (tmp_path / "tokens.json").exists()


def test_a_second_store_sees_tokens_minted_by_the_first(tmp_path):
    first = TokenStore(tmp_path / "tokens.json")
    early = first.add("acme")
    second = TokenStore(tmp_path / "tokens.json")
    late = first.add("beta")  # minted after the second store loaded the file
    assert second.lookup(early).tenant == "acme"
    assert second.lookup(late).tenant == "beta"


def test_stores_minting_in_turn_keep_each_others_tokens(tmp_path):
    first, second = TokenStore(tmp_path / "tokens.json"), TokenStore(tmp_path / "tokens.json")
    a, b = first.add("acme"), second.add("beta")
    third = TokenStore(tmp_path / "tokens.json")
    assert third.lookup(a).tenant == "acme" and third.lookup(b).tenant == "beta"


# Guards: on filesystems with coarse timestamps a rewrite within one mtime tick must still be noticed.
def test_a_second_store_reloads_even_when_the_mtime_did_not_change(tmp_path):
    path = tmp_path / "tokens.json"
    first = TokenStore(path)
    first.add("acme")
    second = TokenStore(path)
    before = os.stat(path).st_mtime_ns
    late = first.add("beta")
    os.utime(path, ns=(before, before))  # what a coarse-timestamp filesystem does to a write in the same tick
    assert second.lookup(late) is not None


def test_ensure_operator_token_writes_a_private_file_and_keeps_it(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    path = tmp_path / "operator.token"
    assert ensure_operator_token(store, path) == path
    token = path.read_text().strip()
    assert mode(path) == 0o600
    principal = BearerAuthenticator(store).authenticate(bearer(token))
    assert principal.operator and principal.tenant == "default"
    ensure_operator_token(TokenStore(tmp_path / "tokens.json"), path)
    assert path.read_text().strip() == token
    assert len(json.loads((tmp_path / "tokens.json").read_text())) == 1


def test_ensure_operator_token_replaces_a_token_the_store_does_not_know(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    path = tmp_path / "operator.token"
    path.write_text("solo_stale\n")
    ensure_operator_token(store, path)
    token = path.read_text().strip()
    assert token != "solo_stale" and store.lookup(token).operator
    assert mode(path) == 0o600
