"""The gateway's token check: signature, key, revocation, expiry, rights; cached for steady callers.

A full check parses the token (Ed25519 signatures of every block) and runs the Datalog policy:
about 0.1 ms. A steady caller repeats the same (token, operation, service, method), so the
answer is cached. A cached answer is only used while it is provably still right:

- revocation is looked up on every call (a set lookup per block), so a revoked token stops at
  once, cached or not;
- an answer is cached only if the same policy also passes at the end of the cache window
  (checks on time are monotonic), so a token never outlives its expiry through the cache;
- a retired root key's cut-off bounds the window too.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from solo.errors import Unauthenticated
from solo.security.capabilities import Grant, Request, authorize, parse
from solo.security.keys import KeyRing


class RevocationSet:
    """Revoked block ids (hex). Fed from `token.revoked` events; read on every call."""

    def __init__(self, ids: Iterable[str] = ()):
        self._ids: set[str] = set(ids)
        self.last_event_id = 0

    def add(self, revocation_ids: Iterable[str]) -> None:
        self._ids.update(revocation_ids)

    def revoked(self, revocation_ids: Iterable[str]) -> bool:
        return any(r in self._ids for r in revocation_ids)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class _Entry:
    grant: Grant
    until: float


class TokenVerifier:
    def __init__(self, keys: KeyRing, revocations: RevocationSet, cache_seconds: float = 10.0,
                 cache_size: int = 50_000, clock: Callable[[], float] = time.time,
                 on_first_seen: Callable[[Grant], None] | None = None):
        self.keys = keys
        self.revocations = revocations
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        self.clock = clock
        self.on_first_seen = on_first_seen  # e.g. audit an attenuated token the first time it is used
        self._cache: OrderedDict[tuple, _Entry] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()  # attenuated tokens already reported
        self._lock = threading.Lock()
        self._keys_checked = 0.0

    @staticmethod
    def _key(token: str, request: Request) -> tuple:
        return hashlib.blake2b(token.encode(), digest_size=16).digest(), request  # 16 bytes, not the token

    def cached(self, token: str, request: Request) -> bool:
        entry = self._cache.get(self._key(token, request))
        return entry is not None and entry.until > self.clock()

    def verify(self, token: str, request: Request) -> Grant:
        now = self.clock()
        key = self._key(token, request)
        entry = self._cache.get(key)
        if entry is not None and entry.until > now:
            if self.revocations.revoked(entry.grant.revocation_ids):
                raise Unauthenticated("the token was revoked; ask for a new one (`solo tokens mint`)")
            return entry.grant
        grant, until = self._full(token, request, now)
        if until > now:
            with self._lock:
                self._cache[key] = _Entry(grant, until)
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return grant

    def _full(self, token: str, request: Request, now: float) -> tuple[Grant, float]:
        if now - self._keys_checked > 1.0:  # notice a rotation or a cut-off made by `solo keys rotate`
            self.keys.refresh()
            self._keys_checked = now
        used_key: list[int | None] = []

        def public_key(key_id):
            used_key.append(key_id)
            return self.keys.public_key(key_id, now)

        parsed = parse(token, public_key)
        if self.revocations.revoked(parsed.revocation_ids):
            raise Unauthenticated("the token was revoked; ask for a new one (`solo tokens mint`)")
        grant = authorize(parsed, request, now)
        key_id = used_key[0] if used_key else None
        grant = Grant(grant.tenant, grant.operator, grant.revocation_ids, key_id, grant.blocks)
        if grant.blocks > 1 and self.on_first_seen is not None and grant.revocation_ids[-1] not in self._seen:
            self._seen[grant.revocation_ids[-1]] = None
            if len(self._seen) > self.cache_size:
                self._seen.popitem(last=False)
            self.on_first_seen(grant)
        until = now + self.cache_seconds
        info = next((k for k in self.keys.keys() if k.key_id == key_id), None)
        if info is not None and info.valid_until is not None:
            until = min(until, info.valid_until)
        try:
            authorize(parsed, request, until)  # still allowed at the end of the window?
        except Exception:  # noqa: BLE001 - it expires inside the window: do not cache
            until = now
        return grant, until


__all__ = ["RevocationSet", "TokenVerifier"]
