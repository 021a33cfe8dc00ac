"""Rate limits: a token bucket per root token (a token and everything attenuated from it share one
bucket, since anyone can derive new tokens offline), one per tenant over all its tokens (so that
more tokens minted for a tenant do not multiply its rate), and a budget of refused authentications
per source address. Pure: a clock in, decisions out."""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from solo.errors import Overloaded


@dataclass(frozen=True)
class Rate:
    per_second: float  # 0: unlimited
    burst: float


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float):
        self.tokens, self.stamp = tokens, stamp


class _Buckets:
    """Token buckets by key, the least recently used dropped past `max_buckets` (it starts full again)."""

    def __init__(self, clock: Callable[[], float], max_buckets: int):
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[object, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def refilled(self, key, rate: Rate) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate.burst, now)
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(rate.burst, bucket.tokens + (now - bucket.stamp) * rate.per_second)
            bucket.stamp = now
        return bucket


def _has_one(bucket: _Bucket) -> bool:
    return bucket.tokens >= 1 - 1e-9  # float refill: 0.1 s at 10/s is one call


class RateLimiter:
    def __init__(self, default: Rate, per_tenant: dict[str, Rate] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000,
                 tenant_default: Rate = Rate(0, 0), tenant_rates: dict[str, Rate] | None = None):
        self.default = default
        self.per_tenant = per_tenant or {}
        self.tenant_default = tenant_default  # all of a tenant's tokens together (0: no such limit)
        self.tenant_rates = tenant_rates or {}
        self._buckets = _Buckets(clock, max_buckets)

    def set_rates(self, other: RateLimiter) -> None:
        """Take `other`'s rates (a config reload), keeping the buckets: a lowered rate or burst applies from the
        next call (a bucket never holds more than its burst after a refill)."""
        self.default, self.per_tenant = other.default, other.per_tenant
        self.tenant_default, self.tenant_rates = other.tenant_default, other.tenant_rates

    def rate(self, tenant: str) -> Rate:
        return self.per_tenant.get(tenant, self.default)

    def tenant_rate(self, tenant: str) -> Rate:
        return self.tenant_rates.get(tenant, self.tenant_default)

    def take(self, tenant: str, root_id: str) -> None:
        """Admit one call of the token whose root revocation id is `root_id` (of `tenant`), or raise
        Overloaded with `retry_after` (seconds until a call would be admitted)."""
        limits = [(rate, self._buckets.refilled((kind, key), rate), what)
                  for rate, kind, key, what in ((self.rate(tenant), "token", root_id, "this token"),
                                                (self.tenant_rate(tenant), "tenant", tenant, "this tenant"))
                  if rate.per_second > 0]
        short = [(rate, bucket, what) for rate, bucket, what in limits if not _has_one(bucket)]
        if not short:
            for _, bucket, _ in limits:
                bucket.tokens -= 1
            return
        rate, bucket, what = max(short, key=lambda s: (1 - s[1].tokens) / s[0].per_second)
        wait = (1 - bucket.tokens) / rate.per_second
        error = Overloaded(f"rate limit of {what} reached ({rate.per_second:g} calls/s, bursts of "
                           f"{rate.burst:g}); retry in {math.ceil(wait * 1000)} ms (the retry-after-ms trailer)")
        error.retry_after = wait
        raise error


class FailureBudget:
    """Refused authentications a source address may cause: past its budget, its calls whose token is not
    already known good are refused before any signature is checked, so bad tokens cost the gateway
    little (a client with a valid token it has used before is not affected)."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000):
        self.rate = rate
        self._buckets = _Buckets(clock, max_buckets)

    def exhausted(self, source: str) -> float:
        """Seconds until `source` may be refused again (0: within its budget)."""
        if self.rate.per_second <= 0:
            return 0.0
        bucket = self._buckets.refilled(source, self.rate)
        return 0.0 if _has_one(bucket) else (1 - bucket.tokens) / self.rate.per_second

    def refused(self, source: str) -> None:
        if self.rate.per_second > 0:
            bucket = self._buckets.refilled(source, self.rate)
            bucket.tokens = max(bucket.tokens - 1, 0.0)


__all__ = ["FailureBudget", "Rate", "RateLimiter"]
