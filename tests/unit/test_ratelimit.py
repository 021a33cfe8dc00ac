"""Per-token buckets: bursts, refill, retry-after, per-tenant overrides, unlimited."""
from __future__ import annotations

import pytest

from solo.errors import Overloaded
from solo.security.ratelimit import Rate, RateLimiter


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_burst_then_the_rate_with_a_retry_after():
    clock = Clock()
    limiter = RateLimiter(Rate(10, 3), clock=clock)
    for _ in range(3):
        limiter.take("acme", "root-a")
    with pytest.raises(Overloaded, match="10 calls/s") as err:
        limiter.take("acme", "root-a")
    assert err.value.retry_after == pytest.approx(0.1)
    limiter.take("acme", "root-b")  # another token has its own bucket
    clock.t += 0.1
    limiter.take("acme", "root-a")  # refilled one call's worth
    with pytest.raises(Overloaded):
        limiter.take("acme", "root-a")
    clock.t += 10
    for _ in range(3):  # never more than the burst, however long it waited
        limiter.take("acme", "root-a")
    with pytest.raises(Overloaded):
        limiter.take("acme", "root-a")


def test_tenant_overrides_and_unlimited():
    limiter = RateLimiter(Rate(0, 0), {"slow": Rate(1, 1)}, clock=Clock())
    for _ in range(1000):
        limiter.take("fast", "root")
    limiter.take("slow", "root-s")
    with pytest.raises(Overloaded):
        limiter.take("slow", "root-s")


def test_buckets_are_bounded():
    limiter = RateLimiter(Rate(1, 1), clock=Clock(), max_buckets=10)
    for i in range(100):
        limiter.take("acme", f"root-{i}")
    assert len(limiter._buckets) == 10
