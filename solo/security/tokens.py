"""Who is calling: capability tokens from the `authorization: Bearer <token>` metadata → Principal.

The gateway resolves every call through `CapabilityAuthenticator.authenticate(metadata,
request)`: the token's signature, key, revocation, expiry and rights for that request (see
capabilities.py and verifier.py). The tenant always comes from the token; nothing trusts a
tenant named in a request body.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from solo.core.spec import validate_name
from solo.errors import InvalidRequest, PermissionDenied, SoloError, Unauthenticated
from solo.files import write_atomic
from solo.security.capabilities import RIGHTS, Minted, Request, authorize, check_rights, mint, parse
from solo.security.certs import bound_tenant, is_node
from solo.security.keys import KeyRing
from solo.security.verifier import RevocationSet, TokenVerifier

OPERATOR_TENANT = "default"
TENANT_RIGHTS = RIGHTS  # what a tenant token gets unless the mint narrows it
DAY = 86_400.0


@dataclass(frozen=True)
class Principal:
    tenant: str
    operator: bool = False
    token_id: str = ""  # the first characters of the token's newest revocation id: safe to log
    revocation_ids: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{'operator' if self.operator else 'tenant'}:{self.tenant}/token:{self.token_id}"


class Authenticator(Protocol):
    def authenticate(self, metadata: Iterable[tuple[str, str]], request: Request, context=None) -> Principal: ...

    def known_good(self, metadata: Iterable[tuple[str, str]], request: Request) -> bool: ...


def bearer(metadata: Iterable[tuple[str, str]]) -> str:
    header = next((v for k, v in metadata if k == "authorization"), None)
    if not header:
        raise Unauthenticated("no credentials: send 'authorization: Bearer <token>' metadata "
                              "(the operator token is written by `solo up`; tenants get one from `solo tokens mint`)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
    return token.strip()


class CapabilityAuthenticator:
    def __init__(self, keys: KeyRing, verifier: TokenVerifier, token_ttl_days: float = 30.0,
                 max_token_ttl_days: float = 365.0, client_certs: bool = False):
        self.keys = keys
        self.verifier = verifier
        self.token_ttl = token_ttl_days * DAY
        self.max_token_ttl = max_token_ttl_days * DAY
        self.client_certs = client_certs  # mutual TLS: a certificate may bind the caller to a tenant

    def known_good(self, metadata: Iterable[tuple[str, str]], request: Request) -> bool:
        """Whether this token was verified for this request recently (answered from the cache, no signature
        checked): what a source past its budget of refused authentications may still use."""
        try:
            return self.verifier.cached(bearer(metadata), request)
        except Unauthenticated:
            return False

    def authenticate(self, metadata: Iterable[tuple[str, str]], request: Request, context=None) -> Principal:
        grant = self.verifier.verify(bearer(metadata), request)
        if self.client_certs and context is not None and is_node(context.auth_context()):
            raise PermissionDenied("this is a node certificate (solo certs node), for the call channel between "
                                   "Solo's own processes; a client needs a client certificate: solo certs issue")
        bound = bound_tenant(context.auth_context()) if self.client_certs and context is not None else None
        if bound is not None and bound != grant.tenant:
            refusal = PermissionDenied(f"this client certificate is bound to tenant {bound!r}; a token of tenant "
                                       f"{grant.tenant!r} cannot be used over it")
            refusal.tenant = grant.tenant
            raise refusal
        return Principal(grant.tenant, grant.operator, grant.revocation_ids[-1][:12], grant.revocation_ids)

    def mint(self, caller: Principal, tenant: str, rights: Iterable[str] = (), ttl_seconds: float = 0,
             operator: bool = False) -> Minted:
        """A token for `tenant`. The operator mints for anyone; a tenant token with the `mint`
        right mints for its own tenant, with at most its own rights (checked by the gateway,
        which authorised `mint` for the caller)."""
        validate_name(tenant, "tenant name")
        rights = check_rights(rights) if rights else list(TENANT_RIGHTS)
        if ttl_seconds < 0 or ttl_seconds > self.max_token_ttl:
            raise InvalidRequest(f"ttl_seconds must be between 0 (the default, {self.token_ttl / DAY:g} days) and "
                                 f"{self.max_token_ttl:g} ([security] max_token_ttl_days)")
        if not caller.operator:
            if operator:
                raise PermissionDenied("only the operator can mint operator tokens")
            if tenant != caller.tenant:
                raise PermissionDenied(f"a tenant token can only mint tokens for its own tenant ({caller.tenant!r})")
        key_id, private = self.keys.private_key()
        return mint(private, key_id, tenant, rights, ttl_seconds or self.token_ttl, operator=operator)

    def rights_allowed(self, token: str, rights: Iterable[str]) -> list[str]:
        """The subset of `rights` that `token` itself has (a minted token never exceeds its minter)."""
        allowed = []
        for right in rights:
            try:
                self.verifier.verify(token, Request(right))
                allowed.append(right)
            except SoloError:
                pass
        return allowed


def authenticator(config, keys: KeyRing) -> CapabilityAuthenticator:
    """The gateway's authenticator from the [security] config."""
    c = config.security
    verifier = TokenVerifier(keys, RevocationSet(), cache_seconds=c.verify_cache_seconds)
    return CapabilityAuthenticator(keys, verifier, c.token_ttl_days, c.max_token_ttl_days,
                                   client_certs=config.tls.enabled and config.tls.require_client_cert)


def ensure_operator_token(keys: KeyRing, path: Path, ttl_days: float = 365.0) -> Path:
    """Write an operator token to `path` (0600) on first start, or when the one there is no longer
    valid (expired, or its key was cut off); keep it otherwise."""
    if path.exists():
        try:  # still good for at least a day?
            soon = time.time() + DAY
            authorize(parse(path.read_text().strip(), lambda key_id: keys.public_key(key_id, soon)), Request("deploy"),
                      soon)
            return path
        except SoloError:
            pass
    key_id, private = keys.private_key()
    minted = mint(private, key_id, OPERATOR_TENANT, RIGHTS, ttl_days * DAY, operator=True)
    write_atomic(path, minted.token + "\n")
    return path


__all__ = ["Authenticator", "CapabilityAuthenticator", "authenticator", "OPERATOR_TENANT", "Principal", "bearer",
           "ensure_operator_token"]
