"""Gateway admission (pure): tenant quota, per-service queue, fair shares at the global limit."""
from __future__ import annotations

import asyncio
import heapq
from collections import Counter

import pytest

from solo import metrics
from solo.errors import Overloaded
from solo.gateway.admission import HARD_FACTOR, MAX_HELD, MAX_HELD_BYTES, PACING_SECONDS, RATE_WINDOW, Admission
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
    assert admission.per_service["kv"] == 5


def test_idle_capacity_is_borrowed_and_at_the_limit_each_tenant_keeps_its_fair_share():
    admission = Admission(lambda t: 0, service_queue_limit=10_000, max_in_flight=10)
    noisy = hold(admission, "noisy", n=10)  # alone, it may use everything
    with pytest.raises(Overloaded, match="fair share is 10") as err:
        admission.admit("noisy", "svc")
    assert err.value.reason == "gateway_limit"
    hold(admission, "quiet", n=4)  # quiet is under its fair share (10 / 2 = 5): admitted over the limit
    hold(admission, "quiet", n=1)
    with pytest.raises(Overloaded):
        admission.admit("quiet", "svc")  # 5 = its share
    release(noisy[:5])  # 10 in flight again: noisy at 5 holds its share, quiet too
    with pytest.raises(Overloaded):
        admission.admit("noisy", "svc")
    assert admission.total == 10 <= 10 * HARD_FACTOR


def test_a_tenant_alone_borrows_past_the_adaptive_limit_and_shares_it_once_another_calls():
    clock = Clock()
    admission = Admission(lambda t: 0, service_queue_limit=10_000, max_in_flight=100, adaptive=True,
                          min_in_flight=8, clock=clock)
    admission.limit = 8.0  # shrunk under load
    busy = hold(admission, "busy", n=64)  # alone: nothing to protect, no call shed
    busy += hold(admission, "busy", n=36)
    with pytest.raises(Overloaded, match="limit of 100"):  # max_in_flight still bounds it
        admission.admit("busy", "svc")
    other = hold(admission, "other", n=4)  # a newcomer is admitted up to its share of 8 despite busy's 100
    with pytest.raises(Overloaded, match="fair share is 4"):
        admission.admit("other", "svc")
    with pytest.raises(Overloaded, match="fair share is 4"):
        admission.admit("busy", "svc")
    release(busy + other)


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


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run_calls(admission, clock, tenant, n, latency, service="svc", concurrency=100):
    """n calls one after another, each taking `latency` seconds; returns how many were shed."""
    shed = 0
    for _ in range(n):
        try:
            slot = admission.admit(tenant, service, concurrency, measure=True)
        except Overloaded:
            shed += 1
            clock.now += 0.001
            continue
        slot.__enter__()
        clock.now += latency
        slot.__exit__(None, None, None)
    return shed


def test_the_adaptive_limit_shrinks_when_calls_slow_down_and_grows_back_when_they_do_not():
    clock = Clock()
    admission = Admission(lambda t: 0, max_in_flight=400, adaptive=True, min_in_flight=16, clock=clock,
                          jitter=lambda: 0.5)
    start = admission.current_limit
    assert start == 400
    run_calls(admission, clock, "acme", 200, 0.002)  # the service's fastest: 2 ms
    assert admission.current_limit == start
    run_calls(admission, clock, "acme", 300, 0.02)  # ten times slower: the machine is saturated
    shrunk = admission.current_limit
    assert 16 <= shrunk < start / 2
    held = hold(admission, "acme", "busy", n=shrunk * 2 // 3)  # busy enough that the limit holds calls back
    run_calls(admission, clock, "acme", 3000, 0.002)  # fast again: the limit grows back
    assert admission.current_limit > shrunk * 1.3  # up to where it no longer holds calls back (2x in flight)
    release(held)


def test_the_fixed_limit_never_moves():
    clock = Clock()
    admission = Admission(lambda t: 0, max_in_flight=400, clock=clock)
    run_calls(admission, clock, "acme", 2000, 0.05)
    assert admission.current_limit == 400


def at_quota(clock) -> Admission:
    """'noisy' holds its quota of 2 calls: every further call of it is shed."""
    admission = Admission(lambda t: 2 if t == "noisy" else 0, clock=clock, jitter=lambda: 0.5)
    hold(admission, "noisy", n=2)
    return admission


def refusals(admission, clock, calls: int, every: float, tenant: str = "noisy") -> list[Overloaded]:
    """`calls` shed calls of `tenant`, one every `every` seconds."""
    told = []
    for _ in range(calls):
        clock.now += every
        with pytest.raises(Overloaded) as err:
            admission.admit(tenant, "svc")
        told.append(err.value)
    return told


def retries(admission, clock, calls: int, every: float) -> list[float]:
    """The retry-after each of `calls` shed calls of 'noisy', one every `every` seconds, was told."""
    return [error.retry_after for error in refusals(admission, clock, calls, every)]


def test_a_tenant_that_keeps_being_shed_is_told_to_come_back_later_and_then_sooner_again():
    clock = Clock()
    admission = at_quota(clock)
    retry = retries(admission, clock, 2500, 0.002)  # 5 s of 500 shed calls per second, nothing admitted
    assert retry[0] == pytest.approx(0.05)
    assert retry[-1] > 1.0  # ~1,000 callers for no admitted calls: come back much later
    assert retry[-1] <= 5.0
    assert admission.admit("quiet", "svc")  # another tenant is unaffected
    release(hold(admission, "noisy", n=0))
    admission.in_flight["noisy"] = 0  # its calls finished: admitted again, and no longer told to wait long
    for _ in range(4):
        clock.now += 1.1
        slot = admission.admit("noisy", "svc")
        slot.__enter__()
        slot.__exit__(None, None, None)
    assert admission._tenants["noisy"].retry_after < retry[-1] / 4


def test_a_sudden_flood_is_told_to_back_off_within_a_fraction_of_a_window():
    """600 callers arriving at once must not keep coming back every RETRY_MIN for a whole window."""
    clock = Clock()
    retry = retries(at_quota(clock), clock, 300, 0.0001)  # 10,000 calls/s for 30 ms
    assert retry[0] == pytest.approx(0.05)
    assert retry[-1] >= 1.0  # long before the 0.25 s window is over


def test_refusals_are_held_for_a_tenant_whose_callers_come_back_before_the_retry_after():
    clock = Clock()
    admission = at_quota(clock)
    hammered = refusals(admission, clock, 1000, 0.002)  # 2 s of 500 refusals/s: nobody waits its retry-after
    assert not any(error.hold for error in hammered[:250])  # a flood's first 0.5 s are its onset: answered at once
    assert all(error.hold == error.retry_after > 0.05 for error in hammered[-250:])


def test_one_tenant_ignoring_the_retry_after_never_gets_another_tenants_refusals_held():
    clock = Clock()
    admission = Admission(lambda t: 2, clock=clock, jitter=lambda: 0.5)
    hold(admission, "noisy", n=2)
    hold(admission, "polite", n=2)  # both at their quota: every further call of either is shed
    for _ in range(1000):  # noisy hammers; polite is shed now and then, at the same moments
        noisy = refusals(admission, clock, 1, 0.002)[-1]
        if _ % 50 == 0:
            assert not refusals(admission, clock, 1, 0.0, tenant="polite")[-1].hold
    assert noisy.hold


def test_callers_that_wait_their_retry_after_are_never_held_and_holding_can_be_turned_off():
    clock = Clock()
    polite = at_quota(clock)
    start, due = clock.now, [(clock.now + i * 0.0005, i) for i in range(600)]  # 600 callers arriving together
    heapq.heapify(due)
    while due[0][0] < start + 20:  # 20 s, each caller back when the retry-after it was told has passed
        clock.now, caller = heapq.heappop(due)
        with pytest.raises(Overloaded) as err:
            polite.admit("noisy", "svc")
        assert not err.value.hold, f"a caller that waits as told was held at {clock.now - start:.2f} s"
        heapq.heappush(due, (clock.now + err.value.retry_after, caller))
    off = Admission(lambda t: 2, clock=clock, jitter=lambda: 0.5, hold_ignored=False)
    hold(off, "noisy", n=2)
    assert not any(error.hold for error in refusals(off, clock, 1000, 0.002))


def test_holding_stops_once_the_tenant_calls_no_more_than_it_is_told():
    clock = Clock()
    admission = at_quota(clock)
    assert refusals(admission, clock, 1000, 0.002)[-1].hold
    clock.now += PACING_SECONDS  # then one call a second for a while: no longer a flood of refusals
    assert not refusals(admission, clock, 5, 1.0)[-1].hold
    again = refusals(admission, clock, 100, 0.002)  # a new flood within a minute: held from its first window
    assert not again[0].hold and again[-1].hold
    clock.now += 120  # ...but after a quiet while, a flood's onset is answered at once again
    assert not any(error.hold for error in refusals(admission, clock, 100, 0.002))


def test_a_held_refusal_waits_out_its_retry_after_but_never_its_deadline():
    admission = Admission(lambda t: 0)

    def held(hold_for: float, retry_after: float, remaining: float | None, tenant: str = "noisy",
             size: int = 100) -> Overloaded:
        error = Overloaded("shed")
        error.hold, error.retry_after, error.tenant = hold_for, retry_after, tenant
        asyncio.run(admission.hold(error, remaining, size))
        return error

    counted = metrics.REFUSALS_HELD.labels("noisy")._value.get()
    waited = held(0.2, 0.3, None)
    assert waited.retry_after == pytest.approx(0.1)  # what is left of it after the wait
    assert "answered after 0.20 s" in waited.message and "retry-after" in waited.message
    assert metrics.REFUSALS_HELD.labels("noisy")._value.get() == counted + 1
    assert held(0.2, 0.3, 0.15).retry_after == pytest.approx(0.25)  # 0.05 s: answered 0.1 s before the deadline
    assert held(0.6, 0.7, 0.7).retry_after == pytest.approx(0.14)  # 0.56 s: at most 80% of the time left
    near = held(0.2, 0.3, 0.05)
    assert near.retry_after == 0.3 and near.message == "shed"  # too close to the deadline: at once
    assert held(0.0, 0.3, None).message == "shed"  # not marked: at once
    assert held(0.2, 0.3, None, size=MAX_HELD_BYTES + 1).message == "shed"  # too large to keep: at once
    admission.held_by["other"] = MAX_HELD // 2
    assert held(0.05, 0.3, None).message != "shed"  # two tenants held: each may hold half
    admission.held_by["noisy"] = MAX_HELD // 2
    assert held(0.05, 0.3, None).message == "shed"  # ...and no more
    del admission.held_by["noisy"]
    admission.held_by["other"] = MAX_HELD
    assert held(0.2, 0.3, None).message == "shed"  # too many held already: at once
    assert admission.held == MAX_HELD and set(admission.held_by) == {"other"}


def test_a_held_refusal_whose_caller_goes_away_releases_its_place():
    admission = Admission(lambda t: 0)
    error = Overloaded("shed")
    error.hold, error.retry_after, error.tenant = 5.0, 5.0, "noisy"

    async def cancelled():
        task = asyncio.create_task(admission.hold(error, None, 100))
        await asyncio.sleep(0.05)
        assert admission.held == 1 and admission.held_by["noisy"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    counted = metrics.REFUSALS_HELD.labels("noisy")._value.get()
    asyncio.run(cancelled())
    assert admission.held == 0 and not admission.held_by
    assert metrics.REFUSALS_HELD.labels("noisy")._value.get() == counted  # not answered, so not counted


def test_the_tenant_summary_skips_the_per_tenant_metric_of_held_refusals():
    metrics.REFUSALS_HELD.labels("summarised").inc()
    assert metrics.tenant_summary("summarised") == {}


def adaptive(clock) -> Admission:
    return Admission(lambda t: 0, max_in_flight=10_000, adaptive=True, clock=clock, jitter=lambda: 0.5)


def tick(admission, clock, tenants, latency, concurrency=100, period=0.0) -> Counter:
    """One call per entry of `tenants`, started together, each taking `latency`; then the clock moves on
    to `period` when that is longer. Returns the shed calls per tenant."""
    shed: Counter = Counter()
    slots = []
    for tenant in tenants:
        try:
            slots.append(admission.admit(tenant, "svc", concurrency, measure=True))
        except Overloaded:
            shed[tenant] += 1
    for slot in slots:
        slot.__enter__()
    clock.now += latency
    for slot in slots:
        slot.__exit__(None, None, None)
    clock.now += max(0.0, period - latency)
    return shed


def test_under_congestion_the_heaviest_tenant_is_capped_and_the_light_ones_never_are():
    clock = Clock()
    admission = adaptive(clock)
    shed: Counter = Counter()
    for _ in range(100):  # 1 s of fast calls: no congestion, nobody is capped
        shed += tick(admission, clock, ["noisy"] + ["quiet-1", "quiet-2"], 0.002, period=0.01)
    assert shed == {}
    for _ in range(250):  # then noisy floods (1,500 calls/s): calls ten times slower than their fastest, congestion
        shed += tick(admission, clock, ["noisy"] * 30 + ["quiet-1", "quiet-2"], 0.02, period=0.01)
    assert shed["noisy"] > 100
    assert shed["quiet-1"] == shed["quiet-2"] == 0


def test_a_tenant_alone_is_never_rate_capped_even_under_congestion():
    clock = Clock()
    admission = adaptive(clock)
    run_calls(admission, clock, "solo-tenant", 200, 0.002)
    shed: Counter = Counter()
    for burst in range(1, 40):  # its rate keeps growing while every call is ten times slower than its fastest
        shed += tick(admission, clock, ["solo-tenant"] * (burst * 5), 0.02, concurrency=10_000)
    assert sum(shed.values()) == 0


def test_a_slow_gateway_serving_few_calls_caps_nobody():
    """Congestion from something else (a CPU hog) while one tenant makes most of a few hundred calls/s:
    no rate cap (it would shed the victim of the hog, not a flood)."""
    clock = Clock()
    admission = adaptive(clock)
    run_calls(admission, clock, "busy", 5, 0.002)
    shed: Counter = Counter()
    for i in range(400):  # 8 s of ticks of 20 ms: "busy" makes 4 calls each (200/s), "light" one every 4th
        shed += tick(admission, clock, ["busy"] * 4 + (["light"] if i % 4 == 0 else []), 0.02)
    assert sum(shed.values()) == 0


def test_a_stray_call_from_another_tenant_does_not_cap_the_one_doing_nearly_all_the_work():
    clock = Clock()
    admission = adaptive(clock)
    run_calls(admission, clock, "busy", 5, 0.002)
    shed: Counter = Counter()
    for i in range(200):  # 4 s of 20 ms ticks, 20 calls each from "busy" (1,000/s); "stray" calls twice at the start
        shed += tick(admission, clock, ["busy"] * 20 + (["stray"] if i < 2 else []), 0.02)
    assert sum(shed.values()) == 0


def test_a_capped_tenant_is_paced_through_the_window_not_let_in_as_a_burst():
    clock = Clock()
    admission = adaptive(clock)
    admission._cap = 100.0  # as set under congestion: 100 calls per 0.25 s window
    admission._rate_start = clock.now
    burst = sum(1 for _ in range(100) if _admitted(admission, "noisy"))  # all at the start of the window
    assert burst == 10  # a tenth up front
    clock.now += RATE_WINDOW / 2
    later = sum(1 for _ in range(100) if _admitted(admission, "noisy"))
    assert later == 50  # up to 60 by half way


def _admitted(admission, tenant) -> bool:
    try:
        admission.admit(tenant, "svc", 1000, measure=True)
        return True
    except Overloaded:
        return False
