"""Admission at the gateway: which calls start now and which are shed at once.

Three limits, checked before a call is forwarded, each answered with RESOURCE_EXHAUSTED and a
short retry-after instead of letting calls pile up:

- the tenant's quota of calls in flight (`[quotas] max_concurrent_calls`);
- a queue per service: calls beyond the service's concurrency wait in its host, at most
  `[limits] service_queue_limit` of them;
- the gateway's own in-flight limit (`[limits] max_in_flight`), shared fairly: below it anyone may
  borrow idle capacity; at it, a tenant is admitted only while it holds less than its fair share
  (the limit divided by the tenants with calls in flight), so a noisy tenant cannot starve the rest.
  Over-admission for fairness is bounded at 1.5 times the limit.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from solo.errors import Overloaded

RETRY_AFTER = 0.05  # seconds: calls finish in milliseconds, so a slot frees up soon
HARD_FACTOR = 1.5


def _shed(message: str, reason: str) -> Overloaded:
    error = Overloaded(message)
    error.retry_after = RETRY_AFTER
    error.reason = reason
    return error


class Admission:
    def __init__(self, limit_for: Callable[[str], int], service_queue_limit: int = 1000,
                 max_in_flight: int = 10_000):
        self.limit_for = limit_for
        self.service_queue_limit = service_queue_limit
        self.max_in_flight = max_in_flight
        self._limits: dict[str, int] = {}
        self.in_flight: Counter[str] = Counter()
        self.per_service: Counter[tuple[str, str]] = Counter()
        self.total = 0

    def _check(self, tenant: str, service: str, concurrency: int) -> None:
        limit = self._limits.get(tenant)
        if limit is None:
            limit = self._limits[tenant] = self.limit_for(tenant)
        mine = self.in_flight[tenant]
        if limit and mine >= limit:
            raise _shed(f"quota max_concurrent_calls: the tenant has {mine} calls in flight and may have {limit}; "
                        "retry shortly or ask the operator for a larger quota", "tenant_quota")
        waiting = self.per_service[(tenant, service)]
        if service and waiting >= concurrency + self.service_queue_limit:
            raise _shed(f"service {service!r} is saturated: {waiting} calls in flight for {concurrency} at a time and "
                        f"a queue of {self.service_queue_limit}; retry shortly, or deploy it with a higher "
                        "--concurrency", "service_queue")
        if self.total >= self.max_in_flight:
            active = sum(1 for n in self.in_flight.values() if n > 0) + (0 if mine else 1)
            fair = self.max_in_flight / active
            if mine >= fair or self.total >= self.max_in_flight * HARD_FACTOR:
                raise _shed(f"the gateway is at its limit of {self.max_in_flight} calls in flight and this tenant "
                            f"holds {mine} (its fair share is {fair:.0f}); retry shortly", "gateway_limit")

    def admit(self, tenant: str, service: str = "", concurrency: int = 1) -> "_Slot":
        """Check now (raises Overloaded when shed); the returned slot holds the place while the call runs."""
        self._check(tenant, service, concurrency)
        return _Slot(self, tenant, service)


class _Slot:
    def __init__(self, admission: Admission, tenant: str, service: str):
        self.admission, self.key = admission, (tenant, service)

    def __enter__(self) -> None:
        a = self.admission
        a.in_flight[self.key[0]] += 1
        a.per_service[self.key] += 1
        a.total += 1

    def __exit__(self, *exc) -> None:
        a = self.admission
        a.in_flight[self.key[0]] -= 1
        a.per_service[self.key] -= 1
        a.total -= 1
        if not a.per_service[self.key]:
            del a.per_service[self.key]


__all__ = ["Admission"]
