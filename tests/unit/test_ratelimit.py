"""Per-token buckets: bursts, refill, retry-after, per-tenant overrides, unlimited."""
from __future__ import annotations

import pytest

from solo.errors import Overloaded
from solo.security.ratelimit import FailureBudget, Rate, RateLimiter


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


def test_more_tokens_for_a_tenant_do_not_multiply_its_rate():
    clock = Clock()
    limiter = RateLimiter(Rate(10, 10), clock=clock, tenant_default=Rate(15, 15))
    admitted = 0
    for i in range(100):  # ten root tokens of one tenant, each well within its own rate
        try:
            limiter.take("acme", f"root-{i % 10}")
            admitted += 1
        except Overloaded as exc:
            assert "this tenant" in exc.message and exc.retry_after > 0
    assert admitted == 15
    limiter.take("other", "root-x")  # another tenant has its own budget
    clock.t += 1.0
    limiter.take("acme", "root-0")  # refilled


def test_refused_authentications_have_a_budget_per_source():
    clock = Clock()
    budget = FailureBudget(Rate(2, 4), clock=clock)
    for _ in range(4):
        assert budget.exhausted("10.0.0.1") == 0
        budget.refused("10.0.0.1")
    assert budget.exhausted("10.0.0.1") == pytest.approx(0.5)
    assert budget.exhausted("10.0.0.2") == 0  # per source
    clock.t += 0.5
    assert budget.exhausted("10.0.0.1") == 0
