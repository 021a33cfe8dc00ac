"""Per-token rate limits: a token bucket per root token (a token and everything attenuated from it
share one bucket, since anyone can derive new tokens offline). Pure: a clock in, decisions out."""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from solo.errors import Overloaded


@dataclass(frozen=True)
class Rate:
    per_second: float  # 0: unlimited
    burst: float


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float):
        self.tokens, self.stamp = tokens, stamp


class RateLimiter:
    def __init__(self, default: Rate, per_tenant: dict[str, Rate] | None = None,
                 clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000):
        self.default = default
        self.per_tenant = per_tenant or {}
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def rate(self, tenant: str) -> Rate:
        return self.per_tenant.get(tenant, self.default)

    def take(self, tenant: str, root_id: str) -> None:
        """Admit one call of the token whose root revocation id is `root_id`, or raise Overloaded
        with `retry_after` (seconds until a call would be admitted)."""
        rate = self.rate(tenant)
        if rate.per_second <= 0:
            return
        now = self.clock()
        bucket = self._buckets.get(root_id)
        if bucket is None:
            bucket = self._buckets[root_id] = _Bucket(rate.burst, now)
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)  # the least recently used token starts full again
        else:
            self._buckets.move_to_end(root_id)
            bucket.tokens = min(rate.burst, bucket.tokens + (now - bucket.stamp) * rate.per_second)
            bucket.stamp = now
        if bucket.tokens >= 1 - 1e-9:  # float refill: 0.1 s at 10/s is one call
            bucket.tokens -= 1
            return
        wait = (1 - bucket.tokens) / rate.per_second
        error = Overloaded(f"rate limit of this token reached ({rate.per_second:g} calls/s, bursts of "
                           f"{rate.burst:g}); retry in {math.ceil(wait * 1000)} ms (the retry-after-ms trailer)")
        error.retry_after = wait
        raise error


__all__ = ["Rate", "RateLimiter"]
