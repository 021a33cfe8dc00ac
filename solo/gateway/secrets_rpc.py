"""The vault's RPCs: PutSecret, GetSecret, ListSecrets, DeleteSecret, RotateMasterKey.

Each is authorised for the key it touches (Request(secret=key)), so a token attenuated with
`solo tokens attenuate --secret db/*` reaches only those keys. The tenant is the token's: a key of
another tenant is answered like a key that does not exist. Deploys (and swaps, which put new code
beside the secrets) are checked here too: the token needs secrets.read on every key the service gets.
"""
from __future__ import annotations

from solo._proto import solo_pb2 as pb
from solo.errors import InvalidRequest, Overloaded, PermissionDenied
from solo.gateway.status import rpc
from solo.security.capabilities import Request, secret_allowed, secret_patterns
from solo.security.ratelimit import Rate, RateLimiter
from solo.security.tokens import bearer
from solo.security.vault import KEY_RE, validate_key

# vault RPCs a tenant may make per second at one gateway process (each is file work, with fsync, and an event in
# the registry; services get their secrets at start, not through these, so people and scripts never need more)
VAULT_CALLS = Rate(20.0, 100.0)


def _on_secret(operation: str, key=lambda r: r.key):
    """The right for the request's key; a key that is not a valid one is checked without it (refused by an
    attenuated token, answered INVALID_ARGUMENT after authentication otherwise)."""
    def need(request) -> Request:
        wanted = key(request)
        return Request(operation, secret=wanted if KEY_RE.fullmatch(wanted or "") else "")
    return need


class SecretsRpcs:
    """Mixed into GatewayServicer (gateway/servicer.py)."""

    _vault_limiter: RateLimiter | None = None

    def _vault_spend(self, tenant: str) -> None:
        if self._vault_limiter is None:
            self._vault_limiter = RateLimiter(Rate(0, 0), tenant_default=VAULT_CALLS)
        try:
            self._vault_limiter.take(tenant, "")
        except Overloaded as exc:
            error = Overloaded(f"vault calls: {exc.message}")
            error.retry_after = exc.retry_after
            raise error from None

    async def _check_spec_secrets(self, principal, context, keys, must_exist: bool = True) -> None:
        """The caller's token may read every key a service is deployed with (and each exists)."""
        for key in keys:
            wanted = Request("secrets.read", secret=key)
            try:
                self.authenticator.authenticate(context.invocation_metadata() or (), wanted, context)
            except PermissionDenied as exc:
                self.audit.denied(exc, wanted)
                refusal = PermissionDenied(f"the service is deployed with secret {key!r} and this token may not read "
                                           "it (secrets.read, or a --secret attenuation that leaves it out); use a "
                                           "token that may, or deploy without it")
                refusal.tenant = principal.tenant
                raise refusal from None
        if keys and must_exist:
            await self.registry.secret_check(principal.tenant, list(keys))

    @rpc(_on_secret("secrets.write"))
    async def PutSecret(self, request, context, principal):
        self._vault_spend(principal.tenant)
        validate_key(request.key)
        limit = self.config.vault.max_secret_bytes
        if len(request.value) > limit:
            raise InvalidRequest(f"the value is {len(request.value)} bytes, over [vault] max_secret_bytes ({limit}); "
                                 "store a smaller secret")
        result = await self.registry.secret_put(principal.tenant, request.key, request.value,
                                                self._who(principal, context))
        return pb.PutSecretResponse(key=result["key"], version=result["version"])

    @rpc(_on_secret("secrets.read"))
    async def GetSecret(self, request, context, principal):
        self._vault_spend(principal.tenant)
        validate_key(request.key)
        result = await self.registry.secret_get(principal.tenant, request.key, request.version,
                                                self._who(principal, context))
        return pb.GetSecretResponse(key=result["key"], version=result["version"], value=result["value"],
                                    created_at=result["created_at"])

    @rpc(_on_secret("secrets.read", lambda r: r.prefix))
    async def ListSecrets(self, request, context, principal):
        self._vault_spend(principal.tenant)
        if request.prefix:
            validate_key(request.prefix)
        # a token attenuated to some keys sees only those (not even the names of the others): its secret patterns
        # are read once from the token (verified for this call by `rpc`) and matched here, the same answer as the
        # policy per key without a Datalog run (and a verify-cache entry) per listed key
        checks = secret_patterns(bearer(context.invocation_metadata() or ()))
        found = await self.registry.secret_list(principal.tenant, request.prefix)
        if checks:
            found = [s for s in found if secret_allowed(checks, s["key"])]
        return pb.ListSecretsResponse(secrets=[pb.SecretInfo(**s) for s in found])

    @rpc(_on_secret("secrets.write"))
    async def DeleteSecret(self, request, context, principal):
        self._vault_spend(principal.tenant)
        validate_key(request.key)
        result = await self.registry.secret_delete(principal.tenant, request.key, self._who(principal, context))
        return pb.DeleteSecretResponse(versions=result["versions"])

    @rpc(lambda r: Request("secrets.write"))
    async def RotateMasterKey(self, request, context, principal):
        self._vault_spend(principal.tenant)
        if not principal.operator:
            raise PermissionDenied("only the operator can rotate the vault's master key (it protects every tenant's "
                                   "secrets)")
        result = await self.registry.vault_rotate(principal.tenant, self._who(principal, context))
        return pb.RotateMasterKeyResponse(key_id=result["key_id"], rewrapped=result["rewrapped"])


__all__ = ["SecretsRpcs"]
