"""The token checked before a request's body is read, so a caller without a valid token never costs a body.

gRPC reads a message before its handler runs; REST need not. A route that takes a body authenticates the
caller first, for what the request asks as far as its path and query say (the handler's own `need`, read
off the `rpc` wrapper of gateway/status.py): the same budget of refused authentications per client
address, the same authenticator and audit. A missing, malformed, forged, expired or revoked token is
401 (past the budget: 429) before one byte of the body is read. A token that is valid but not allowed
what the path alone says goes on: the body may name what it allows (a deploy's service), and the
handler's own check decides (the verification is cached, so the second check costs a lookup).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from solo.errors import Overloaded, PermissionDenied, Unauthenticated
from solo.gateway.status import peer_host
from solo.security.capabilities import Request
from solo.security.tokens import bearer

_NEEDS: dict[tuple[type, str], Callable | None] = {}


def need_of(servicer, rpc: str) -> Callable | None:
    """The `need(request) -> Request` the servicer's `rpc` wrapper checks the token for (None: not wrapped)."""
    key = (type(servicer), rpc)
    if key not in _NEEDS:
        handler = getattr(type(servicer), rpc, None)
        try:
            found = inspect.getclosurevars(handler).nonlocals.get("need") if callable(handler) else None
        except TypeError:  # a builtin or a C function: no closure
            found = None
        _NEEDS[key] = found if callable(found) else None
    return _NEEDS[key]


def authenticate_first(servicer, rpc: str, request, context) -> None:
    """Refuse (raise) a caller whose token does not authenticate, as the `rpc` wrapper would; `request` is the
    RPC's message as far as the path and query make it."""
    metadata = context.invocation_metadata()
    bearer(metadata)  # no Authorization, or not 'Bearer <token>': 401 at once
    authenticator = getattr(servicer, "authenticator", None)
    budget = getattr(servicer, "auth_failures", None)
    if authenticator is None or budget is None:  # a servicer without authentication (tests' bare ones)
        return
    need = need_of(servicer, rpc)
    try:
        wanted = need(request) if need is not None else Request("whoami")
    except Exception:  # noqa: BLE001 - a request the handler will refuse itself; authentication alone here
        wanted = Request("whoami")
    source = peer_host(context)
    wait = budget.exhausted(source)
    if wait and not authenticator.known_good(metadata, wanted):
        refusal = Overloaded(f"too many refused authentications from {source}; retry in "
                             f"{math.ceil(wait * 1000)} ms with a valid token")
        refusal.retry_after = wait
        raise refusal
    try:
        authenticator.authenticate(metadata, wanted, context)
    except Unauthenticated as exc:
        budget.refused(source)
        audit = getattr(servicer, "audit", None)
        if audit is not None:
            audit.denied(exc, wanted)
        raise
    except PermissionDenied:
        pass  # authenticated: the handler decides with the whole request
