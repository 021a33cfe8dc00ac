"""Capability tokens: Biscuit tokens signed by the root key, attenuable offline.

A token's first (authority) block, written only by the gateway when it mints, says who and what:

    tenant("acme");  right("invoke");  right("discover");  ...  [operator(true);]
    check if time($t), $t <= 2026-12-27T10:00:00Z;

Anyone holding a token can append a block of *checks* without asking the server
(`attenuate`): one service, some methods, some rights, an earlier expiry. Checks can only
narrow: every block's checks must pass, and the gateway's policy trusts only the authority
block and its own facts, so a fact a holder appends (`right("stop")`, `tenant("bob")`)
grants nothing. For each call the gateway supplies the facts of the request:

    time(now); operation("invoke"); service("kv"); method("get");

and allows it if `right($op), operation($op)` holds and every check passes. The revocation id
of a block (Biscuit's, a hex string) revokes that token and everything derived from it.
"""
from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import biscuit_auth as biscuit

from solo.core.spec import validate_name
from solo.errors import InvalidRequest, PermissionDenied, SoloError, Unauthenticated

# what a token can allow (the gRPC methods map onto these: see gateway/status.py)
RIGHTS = ("deploy", "swap", "stop", "invoke", "discover", "read_events", "watch", "logs", "secrets.read",
          "secrets.write", "mint", "config")
READ_ONLY = ("discover", "read_events", "watch", "logs", "secrets.read")
WHOAMI = "whoami"  # any valid token may ask who it is; attenuation checks always let it through

POLICY = """
time({now});
operation({op});
allow if right($op), operation($op);
allow if operation("whoami");
"""


def _limits() -> biscuit.AuthorizerLimits:
    """Biscuit's default 1 ms wall-clock budget fails honest tokens when two busy cores preempt the
    thread; facts and iterations (1000 / 100) still bound what a crafted token can make us compute."""
    limits = biscuit.AuthorizerBuilder("").limits()
    limits.max_time = dt.timedelta(milliseconds=200)
    return limits


LIMITS = _limits()


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


def check_rights(rights: Iterable[str]) -> list[str]:
    rights = list(dict.fromkeys(rights))
    unknown = [r for r in rights if r not in RIGHTS]
    if unknown:
        raise InvalidRequest(f"unknown rights {unknown}; the rights are {', '.join(RIGHTS)}")
    return rights


@dataclass(frozen=True)
class Minted:
    token: str
    revocation_id: str
    expires_at: float
    key_id: int


def mint(private_key: biscuit.PrivateKey, key_id: int, tenant: str, rights: Iterable[str], ttl_seconds: float,
         operator: bool = False, now: float | None = None) -> Minted:
    """A new token for `tenant` with `rights`, valid for `ttl_seconds`, signed by key `key_id`."""
    rights = check_rights(rights)
    expires = math.ceil((now or time.time()) + ttl_seconds)  # whole seconds, never shorter than asked
    builder = biscuit.BiscuitBuilder("tenant({tenant}); check if time($t), $t <= {expires};",
                                     {"tenant": tenant, "expires": _utc(expires)})
    for right in rights:
        builder.add_fact(biscuit.Fact("right({r})", {"r": right}))
    if operator:
        builder.add_fact(biscuit.Fact("operator(true)"))
    builder.set_root_key_id(key_id)
    token = builder.build(private_key)
    return Minted(token.to_base64(), token.revocation_ids[0], float(int(expires)), key_id)


def attenuate(token: str, public_key: Callable[[int | None], biscuit.PublicKey], *,
              services: Iterable[str] | None = None, methods: Iterable[str] | None = None,
              rights: Iterable[str] | None = None, ttl_seconds: float | None = None,
              secrets: Iterable[str] | None = None, now: float | None = None) -> str:
    """A narrower token derived from `token`, offline (needs only the public key to parse it).

    services: only these services; methods: only these methods (for invoke); rights: only these
    operations; ttl_seconds: expire sooner; secrets: only secret keys matching these patterns
    (`db/*` is a prefix, anything else one exact key). Each given restriction becomes one check.
    """
    parsed = parse(token, public_key)
    checks: list[tuple[str, dict]] = []
    if services is not None:
        services = [validate_name(s, "service name") for s in services]
        checks.append(('check if service($s), {services}.contains($s) or operation("whoami")',
                       {"services": set(services)}))
    if methods is not None:
        methods = list(methods)
        bad = [m for m in methods if not m.isidentifier() or m.startswith("_") or not m.isascii()]
        if bad:
            raise InvalidRequest(f"invalid method names {bad}: give public method names such as get")
        checks.append(('check if method($m), {methods}.contains($m) or operation($op), $op != "invoke"',
                       {"methods": set(methods)}))
    if rights is not None:
        checks.append(('check if operation($op), {rights}.contains($op)',
                       {"rights": set(check_rights(rights)) | {WHOAMI}}))
    if secrets is not None:
        checks.append(_secrets_check(list(secrets)))
    if ttl_seconds is not None:
        checks.append(("check if time($t), $t <= {expires}", {"expires": _utc(math.ceil((now or time.time()) + ttl_seconds))}))
    if not checks:
        raise InvalidRequest("nothing to restrict: give services, methods, rights or a shorter expiry")
    block = biscuit.BlockBuilder()
    for source, params in checks:
        block.add_check(biscuit.Check(source, params))
    return parsed.append(block).to_base64()


_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_./:-]{1,127}\*?")


def _secrets_check(patterns: list[str]) -> tuple[str, dict]:
    """Secret keys matching `patterns`, for the secret operations only; other operations pass."""
    bodies, params = [], {}
    for i, pattern in enumerate(patterns):
        if not _SECRET_PATTERN.fullmatch(pattern or "") or "*" in pattern[:-1]:
            raise InvalidRequest(f"secret pattern {pattern!r}: use an exact key or a prefix ending in *, e.g. db/*")
        if pattern.endswith("*"):
            bodies.append(f"secret($k), $k.starts_with({{p{i}}})")
            params[f"p{i}"] = pattern[:-1]
        else:
            bodies.append(f"secret($k), $k == {{p{i}}}")
            params[f"p{i}"] = pattern
    bodies.append('operation($op), !["secrets.read", "secrets.write"].contains($op)')
    return "check if " + " or ".join(bodies), params


def parse(token: str, public_key: Callable[[int | None], biscuit.PublicKey]) -> biscuit.Biscuit:
    """Verify the signatures (with the key named by the token's key id) or raise Unauthenticated."""
    refused: list[Unauthenticated] = []

    def key_for(key_id):
        try:
            return public_key(key_id)
        except Unauthenticated as exc:  # biscuit would hide why behind a generic validation error
            refused.append(exc)
            raise

    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated(f"the token is longer than {MAX_TOKEN_CHARS} characters; Solo tokens are far shorter")
    try:
        parsed = biscuit.Biscuit.from_base64(token, key_for)
    except (biscuit.BiscuitValidationError, biscuit.BiscuitSerializationError, ValueError, TypeError) as exc:
        if refused:
            raise refused[0] from None
        raise Unauthenticated(f"invalid token ({_short(exc)}): it is not a Solo token, was changed, or was "
                              "signed by another key; ask for a new one (`solo tokens mint`)") from None
    check_shape(parsed)
    return parsed


# The only statements an appended block may hold: the checks `attenuate` writes. Anything else (facts,
# rules, scopes, third-party blocks, other checks) is refused before any Datalog runs, so a holder
# cannot make the gateway compute more than a few set lookups per block.
_NAME = r'"[A-Za-z0-9_.:/*-]{1,128}"'
_SET = rf"\{{(?:,|{_NAME}(?:, {_NAME})*)\}}"  # Biscuit prints the empty set as {,}
_SECRET = rf"secret\(\$k\), \$k(?:\.starts_with\({_NAME}\)| == {_NAME})"
_ALLOWED = [re.compile(p) for p in (
    rf'check if service\(\$s\), {_SET}\.contains\(\$s\) or operation\("whoami"\);',
    rf'check if method\(\$m\), {_SET}\.contains\(\$m\) or operation\(\$op\), \$op != "invoke";',
    rf"check if operation\(\$op\), {_SET}\.contains\(\$op\);",
    rf'check if (?:{_SECRET} or )+operation\(\$op\), !\["secrets\.read", "secrets\.write"\]\.contains\(\$op\);',
    r"check if time\(\$t\), \$t <= \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ;",
)]
MAX_TOKEN_CHARS = 8192
MAX_BLOCKS = 16


def check_shape(parsed: biscuit.Biscuit) -> None:
    """Refuse appended blocks that are not made of attenuation checks (see _ALLOWED)."""
    if parsed.block_count() > MAX_BLOCKS:
        raise Unauthenticated(f"the token has {parsed.block_count()} blocks; at most {MAX_BLOCKS} are accepted")
    for i in range(1, parsed.block_count()):
        if parsed.block_external_key(i) is not None:
            raise Unauthenticated("the token has a third-party block; Solo accepts only `solo tokens attenuate` blocks")
        for line in parsed.block_source(i).splitlines():
            if line.strip() and not any(p.fullmatch(line.strip()) for p in _ALLOWED):
                raise Unauthenticated(f"the token has a block statement Solo does not accept ({line.strip()[:80]!r}); "
                                      "narrow tokens with `solo tokens attenuate`")


_SECRET_TERM = re.compile(r'secret\(\$k\), \$k(?:\.starts_with\("([^"]*)"\)| == "([^"]*)")')


def secret_patterns(token: str) -> list[tuple[frozenset[str], tuple[str, ...]]]:
    """The secret checks of a token already verified (parse, authorize): one (exact keys, prefixes) per check.
    A key is readable when every check has a pattern it matches (secret_allowed): the same answer as
    authorize(Request("secrets.read", secret=key)) for a token allowed secrets.read, computed in Python (a set
    lookup and a startswith per check), since check_shape admits no other statement about secrets."""
    unverified = biscuit.UnverifiedBiscuit.from_base64(token)
    checks = []
    for i in range(1, unverified.block_count()):
        for line in unverified.block_source(i).splitlines():
            if line.strip().startswith("check if secret("):
                terms = [m.groups() for m in _SECRET_TERM.finditer(line)]
                checks.append((frozenset(k for p, k in terms if p is None),
                               tuple(p for p, _k in terms if p is not None)))
    return checks


def secret_allowed(checks: list[tuple[frozenset[str], tuple[str, ...]]], key: str) -> bool:
    return all(key in exact or key.startswith(prefixes) for exact, prefixes in checks)


_AUTHORITY_TENANT = re.compile(r'^tenant\("([a-z0-9-]+)"\);$', re.M)
_AUTHORITY_EXPIRY = re.compile(r"^check if time\(\$t\), \$t <= (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ);$", re.M)


@dataclass(frozen=True)
class Authority:
    """What the first block (written by the gateway at mint time) says."""
    tenant: str
    operator: bool
    expires_at: float


def authority(parsed: biscuit.Biscuit) -> Authority:
    source = parsed.block_source(0)
    tenant, expiry = _AUTHORITY_TENANT.search(source), _AUTHORITY_EXPIRY.search(source)
    if tenant is None or expiry is None:
        raise Unauthenticated("the token's first block is not one Solo mints; ask for a new token")
    when = dt.datetime.strptime(expiry.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return Authority(tenant.group(1), "operator(true);" in source.splitlines(), when.timestamp())


def inspect(token: str) -> dict:
    """What a token says, without verifying it (for `solo tokens inspect`)."""
    try:
        unverified = biscuit.UnverifiedBiscuit.from_base64(token)
    except Exception as exc:  # noqa: BLE001 - whatever the library raises for garbage
        raise InvalidRequest(f"not a token ({_short(exc)})") from None
    return {"key_id": unverified.root_key_id(), "revocation_ids": list(unverified.revocation_ids),
            "blocks": [unverified.block_source(i) for i in range(unverified.block_count())]}


@dataclass(frozen=True)
class Request:
    """What a call wants to do: an operation (a right), and the service, method or secret it touches."""
    operation: str
    service: str = ""
    method: str = ""
    secret: str = ""


@dataclass(frozen=True)
class Grant:
    tenant: str
    operator: bool
    revocation_ids: tuple[str, ...]
    key_id: int | None
    blocks: int = 1


def authorize(token: biscuit.Biscuit, request: Request, now: float) -> Grant:
    """Run the policy for `request` at time `now`; PermissionDenied/Unauthenticated say why not."""
    # rounded up: Biscuit dates have whole seconds, and a token must not pass after its expiry
    builder = biscuit.AuthorizerBuilder(POLICY, {"now": _utc(math.ceil(now)), "op": request.operation})
    builder.set_limits(LIMITS)
    if request.service:
        builder.add_fact(biscuit.Fact("service({s})", {"s": request.service}))
    if request.method:
        builder.add_fact(biscuit.Fact("method({m})", {"m": request.method}))
    if request.secret:
        builder.add_fact(biscuit.Fact("secret({k})", {"k": request.secret}))
    authorizer = builder.build(token)
    try:
        authorizer.authorize()
    except biscuit.AuthorizationError as exc:
        failed = str(exc).split("following checks failed:")[-1].strip()
        if "check if time($" in failed:
            refusal: SoloError = Unauthenticated("the token has expired; ask for a new one (`solo tokens mint`)")
        else:
            target = f" on {request.service!r}" if request.service else ""
            target += f" method {request.method!r}" if request.method else ""
            refusal = PermissionDenied(f"the token does not allow {request.operation}{target}"
                                       + (f" (failed: {failed})" if failed else ""))
        try:  # whose token it was, for the audit summary
            refusal.tenant = authorizer.query(biscuit.Rule("t($t) <- tenant($t)"))[0].terms[0]
        except Exception:  # noqa: BLE001
            pass
        raise refusal from None
    tenant = authorizer.query(biscuit.Rule("t($t) <- tenant($t)"))
    operator = authorizer.query(biscuit.Rule("o(true) <- operator(true)"))
    if len(tenant) != 1:
        raise Unauthenticated("the token names no single tenant; ask for a new one")
    return Grant(tenant[0].terms[0], bool(operator), tuple(token.revocation_ids), None, token.block_count())


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


__all__ = ["READ_ONLY", "RIGHTS", "Grant", "Minted", "Request", "attenuate", "authorize", "check_rights", "inspect",
           "mint", "parse", "secret_allowed", "secret_patterns"]
