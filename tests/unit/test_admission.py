"""Gateway admission (pure): tenant quota, per-service queue, fair shares at the global limit."""
from __future__ import annotations

import pytest

from solo.errors import Overloaded
from solo.gateway.admission import HARD_FACTOR, Admission
from solo.gateway.audit import Audit


def hold(admission, tenant, service="svc", concurrency=1, n=1):
    slots = [admission.admit(tenant, service, concurrency) for _ in range(n)]
    for slot in slots:
        slot.__enter__()
    return slots


def release(slots):
    for slot in slots:
        slot.__exit__(None, None, None)


def test_a_service_queue_beyond_its_concurrency_is_bounded():
    admission = Admission(lambda t: 0, service_queue_limit=3)
    slots = hold(admission, "acme", "kv", concurrency=2, n=5)  # 2 running + 3 waiting
    with pytest.raises(Overloaded, match="service 'kv' is saturated: 5 calls in flight for 2 at a time") as err:
        admission.admit("acme", "kv", 2)
    assert err.value.retry_after > 0 and err.value.reason == "service_queue"
    hold(admission, "acme", "other", n=1)  # another service has its own queue
    release(slots[:1])
    hold(admission, "acme", "kv", 2)  # a slot freed: admitted again
    assert admission.per_service[("acme", "kv")] == 5


def test_idle_capacity_is_borrowed_and_at_the_limit_each_tenant_keeps_its_fair_share():
    admission = Admission(lambda t: 0, service_queue_limit=10_000, max_in_flight=10)
    noisy = hold(admission, "noisy", n=10)  # alone, it may use everything
    with pytest.raises(Overloaded, match="fair share is 10") as err:
        admission.admit("noisy", "svc")
    assert err.value.reason == "gateway_limit"
    quiet = hold(admission, "quiet", n=4)  # quiet is under its fair share (10 / 2 = 5): admitted over the limit
    hold(admission, "quiet", n=1)
    with pytest.raises(Overloaded):
        admission.admit("quiet", "svc")  # 5 = its share
    release(noisy[:5])  # 10 in flight again: noisy at 5 holds its share, quiet too
    with pytest.raises(Overloaded):
        admission.admit("noisy", "svc")
    assert admission.total == 10 <= 10 * HARD_FACTOR


def test_the_tenant_quota_comes_first():
    admission = Admission(lambda t: 2 if t == "small" else 0)
    hold(admission, "small", n=2)
    with pytest.raises(Overloaded, match="quota max_concurrent_calls"):
        admission.admit("small", "svc")
    hold(admission, "big", n=50)


def test_shed_calls_are_summarised_per_tenant():
    audit = Audit()
    for _ in range(30):
        audit.shed("acme", "kv", "service_queue")
    audit.shed("beta", "", "gateway_limit")
    rows = {r["tenant"]: r for r in audit.rows() if r["type"] == "calls.shed"}
    assert rows["acme"]["payload"]["counts"] == {"kv service_queue": 30} and rows["acme"]["payload"]["total"] == 30
    assert rows["beta"]["payload"]["counts"] == {"- gateway_limit": 1}
    assert [r for r in audit.rows() if r["type"] == "calls.shed"] == []
