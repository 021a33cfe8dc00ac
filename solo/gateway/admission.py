"""Admission at the gateway: which calls start now and which are shed at once.

Three limits, checked before a call is forwarded, each answered with RESOURCE_EXHAUSTED and a
retry-after instead of letting calls pile up:

- the tenant's quota of calls in flight (`[quotas] max_concurrent_calls`);
- a queue per service: calls beyond the service's concurrency wait in its host, at most
  `[limits] service_queue_limit` of them;
- the gateway's in-flight limit, shared fairly: below it anyone may borrow idle capacity, and a
  tenant alone may borrow up to `max_in_flight`; at it, a tenant is admitted only while it holds
  less than its fair share (the limit divided by the tenants with calls in flight), so a noisy
  tenant cannot starve the rest. Over-admission for fairness is bounded at 1.5 times the limit,
  not counting what tenants hold beyond their share (a newcomer is never shed for a borrower's calls).

The in-flight limit adapts (`[limits] adaptive_in_flight`, gradient style as in Netflix's
concurrency-limits): every window it compares how long calls take now with how long the same
services took at their fastest, and shrinks the limit when calls slow down (the machine is
saturated, so more calls in flight only add queueing) or grows it by its square root when they do
not. It stays between `min_in_flight` and `max_in_flight`. Only calls admitted while their service
had a free slot count, so a tenant queueing on its own slow service does not shrink everyone's limit.

While calls are slowed down that way (congestion), the gateway admits at least 500 calls/s, and
the tenants other than the busiest make at least 5% of them, it also caps each tenant's rate of
admitted calls, max-min fairly: every RATE_WINDOW the cap is set so the heaviest tenants give up a
fifth of the load, but never below 1.5 times an even split of the most the gateway got through
lately; while there is no congestion the cap rises again slowly and is lifted. A tenant at or
below its share is never capped. A capped tenant's admissions are paced through the window (a
tenth of its cap up front), so callers that come back together do not get in as one burst.
This is what protects the others when the gateway itself is what saturates, because then calls
queue in front of the handlers, where an in-flight limit cannot see them.

The retry-after adapts per tenant: a shed call is told to come back when, at the tenant's current
admitted rate, the tenant's callers would be shed about half as often as they are admitted. A
tenant with 600 callers and a fair share of 300 calls/s is told ~4 s; one with 60 callers ~0.4 s.
Without that, shed callers return within milliseconds and the rejections alone saturate the CPU.

Refusals are held for tenants whose callers ignore the retry-after (`[limits] hold_ignored_refusals`).
Every refusal costs the gateway a whole gRPC round trip, so callers that retry at once turn a
tenant's 10x flood into thousands of refusals a second that take the CPU from everyone. When, for
IGNORED_SECONDS after the tenant was already told to back off, it is shed at least IGNORED_RATE
times a second and more than IGNORED_RATIO times as often as admitted (the retry-after aims at
SHED_PER_ADMIT), its refusals are answered only once their retry-after has passed (never closer
than HOLD_MARGIN to the call's deadline nor longer than HOLD_FRACTION of the time it has left;
the retry-after trailer then says what is left of it),
for PACING_SECONDS after the last such window. A caller that waits one call at a time then
comes back no sooner than one that honours the retry-after. At most MAX_HELD refusals are held at
once; beyond that they are answered at once again.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from solo import metrics
from solo.errors import Overloaded

RETRY_MIN, RETRY_MAX = 0.05, 5.0  # seconds
RETRY_WINDOW = 0.25  # seconds between updates of a tenant's retry-after
EARLY_SHED, EARLY_WINDOW = 50, 0.02  # ...or sooner, once this many of its calls were shed in at least this long
SHED_PER_ADMIT = 0.5  # the retry-after aims at this many shed calls per admitted one, per tenant
IGNORED_RATIO = 2.0  # shed per admitted call, once told to back off, that reads as callers ignoring the retry-after
IGNORED_RATE = 250.0  # ...when the tenant's calls are also shed this often (per second): refusals that cost
IGNORED_SECONDS = 0.5  # ...in every window for this long: a flood's onset, when callers told the shortest
                       # retry-afters come back together, passes before that
PACING_SECONDS = 10.0  # ...then its refusals are held this long after the last such window
REPEAT_SECONDS = 60.0  # a tenant held within this long is held again from its first such window
MAX_HELD = 4096  # refusals held at once, all tenants together (an even split each, at most, while several are
                 # held); beyond it they are answered at once
MAX_HELD_BYTES = 64 * 1024  # a larger request's refusal is answered at once (held ones stay in memory)
HOLD_FRACTION = 0.8  # a held refusal takes at most this share of the call's remaining time...
HOLD_MARGIN = 0.1  # ...and is answered at least this long (seconds) before the call's deadline
HARD_FACTOR = 1.5
WINDOW = 0.1  # seconds between limit updates (and at least MIN_SAMPLES calls)
MIN_SAMPLES = 10
TOLERANCE = 2.0  # calls may take this much longer than their service's fastest before the limit shrinks
SMOOTHING = 0.2
BASELINE_SECONDS = 10.0  # a service's fastest time: its minimum, which may rise by BASELINE_RISE per 10 s
BASELINE_RISE = 1.1  # so a service that got slower for good is its new normal within minutes, not seconds
MAX_RATIO = 10.0  # one slow call counts at most this much
RATE_WINDOW = 0.25  # seconds per window of the fair rate cap
SHAVE = 0.8  # under congestion the capped tenants keep this fraction of the last window's load
CONGESTION_HOLD = 0.5  # seconds a congestion signal lasts
CAP_RISE = 1.02  # per window without congestion: the cap doubles in ~9 s (faster brings the flood back in bursts)
MIN_CAP_RATE = 500.0  # calls/s the gateway must be admitting before the rate cap engages
OTHERS_SHARE = 0.05  # the other tenants must make at least this share of the calls for the cap to engage
SLACK = 1.5  # a tenant within 1.5x of an even split of the best window is never capped (arrivals are bursty)
BEST_DECAY = 0.99  # per window: the best window is forgotten with a half-life of ~17 s


@dataclass
class _TenantWindow:
    admitted: int = 0
    shed: int = 0
    latency: float = 0.0  # sum over admitted calls that finished in the window
    finished: int = 0
    retry_after: float = RETRY_MIN
    started: float = 0.0
    suspect_since: float | None = None  # since then every window looked like callers ignoring the retry-after
    pacing_until: float = -math.inf  # refusals are held until then: its callers come back before their retry-after


class Admission:
    def __init__(self, limit_for: Callable[[str], int], service_queue_limit: int = 1000,
                 max_in_flight: int = 10_000, adaptive: bool = False, min_in_flight: int = 16,
                 hold_ignored: bool = True, clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random):
        self.limit_for = limit_for
        self.service_queue_limit = service_queue_limit
        self.max_in_flight = max_in_flight
        self.adaptive = adaptive
        self.min_in_flight = min(min_in_flight, max_in_flight)
        self.limit = float(min(max_in_flight, 512) if adaptive else max_in_flight)
        self.clock, self.jitter = clock, jitter
        self.hold_ignored = hold_ignored
        self.held_by: Counter[str] = Counter()  # refusals being held now, per tenant (only tenants holding some)
        self._limits: dict[str, int] = {}
        self.in_flight: Counter[str] = Counter()
        self.per_service: Counter[str] = Counter()  # by service ("<owner>/<name>"), whoever calls it
        self.total = 0
        self._tenants: dict[str, _TenantWindow] = {}
        # the adaptive limit's window and each measured service's fastest time (this and the last period)
        self._window_start = clock()
        self._ratios = 0.0
        self._samples = 0
        self._peak = 0
        self._fastest: dict[tuple[str, str], list[float]] = {}
        self._baseline_start = self._window_start
        # the fair rate cap: admitted calls per tenant in this window, and the cap (calls per window) if any
        self._counts: Counter[str] = Counter()
        self._rate_start = self._window_start
        self._cap: float | None = None
        self._best = 0.0  # the most calls admitted in one window lately: what the gateway can get through
        self._congested_until = 0.0

    @property
    def held(self) -> int:
        """Refusals being held now, all tenants together."""
        return sum(self.held_by.values())

    @property
    def current_limit(self) -> int:
        return int(self.limit)

    def set_limit_for(self, limit_for: Callable[[str], int]) -> None:
        """Tenants' call quotas from now on (a config reload): asked again for each tenant at its next call."""
        self.limit_for = limit_for
        self._limits = {}

    def _check(self, tenant: str, service: str, concurrency: int) -> None:
        limit = self._limits.get(tenant)
        if limit is None:
            limit = self._limits[tenant] = self.limit_for(tenant)
        mine = self.in_flight[tenant]
        if limit and mine >= limit:
            raise self._shed(tenant, f"quota max_concurrent_calls: the tenant has {mine} calls in flight and may "
                             f"have {limit}; retry later or ask the operator for a larger quota", "tenant_quota")
        waiting = self.per_service[service]
        if service and waiting >= concurrency + self.service_queue_limit:
            raise self._shed(tenant, f"service {service!r} is saturated: {waiting} calls in flight for {concurrency} "
                             f"at a time and a queue of {self.service_queue_limit}; retry later, or deploy it with a "
                             "higher --concurrency", "service_queue")
        gateway_limit = int(self.limit)
        if self.total >= gateway_limit:
            others = [n for t, n in self.in_flight.items() if n > 0 and t != tenant]
            if not others:  # alone, a tenant borrows all the idle capacity; once others call, the limit is shared
                gateway_limit = self.max_in_flight
            if self.total >= gateway_limit:
                fair = gateway_limit / (len(others) + 1)
                borrowed = sum(n - fair for n in others if n > fair)  # what others hold beyond their share
                if mine >= fair or self.total - borrowed >= gateway_limit * HARD_FACTOR:
                    raise self._shed(tenant, f"the gateway is at its limit of {gateway_limit} calls in flight and "
                                     f"this tenant holds {mine} (its fair share is {fair:.0f}); retry later",
                                     "gateway_limit")

    def admit(self, tenant: str, service: str = "", concurrency: int = 1, measure: bool = False,
              method: str = "") -> _Slot:
        """Check now (raises Overloaded when shed); the returned slot holds the place while the call runs.

        `service` names the service the same way for every caller ("<owner>/<name>"), so its queue is
        shared. `measure`: the call's latency feeds the adaptive limit and it counts for the rate cap
        (only calls to services that exist); `method` keys its fastest time."""
        self._check(tenant, service, concurrency)
        if self.adaptive and measure:
            now = self.clock()
            if now - self._rate_start >= RATE_WINDOW:
                self._next_cap(now)
            count = self._counts[tenant]
            # paced through the window (a tenth of it up front): a capped tenant whose callers come back
            # together is not let in as one burst at the start of each window
            if self._cap is not None and count >= self._cap * min(1.0, (now - self._rate_start) / RATE_WINDOW + 0.1):
                raise self._shed(tenant, f"the gateway is congested and this tenant has had more than its fair share "
                                 f"of calls ({self._cap / RATE_WINDOW:.0f}/s) lately; retry later", "fair_share")
            self._counts[tenant] = count + 1
        window = self._window(tenant)
        window.admitted += 1
        measured = measure and self.adaptive and self.per_service[service] < concurrency
        return _Slot(self, tenant, service, measured, method)

    # -- retry-after per tenant ------------------------------------------------------------------------------

    def _window(self, tenant: str) -> _TenantWindow:
        window = self._tenants.get(tenant)
        if window is None:
            window = self._tenants[tenant] = _TenantWindow(started=self.clock())
        return window

    def _shed(self, tenant: str, message: str, reason: str) -> Overloaded:
        window = self._window(tenant)
        window.shed += 1
        now = self.clock()
        self._roll(window, now)
        error = Overloaded(message)
        error.retry_after = window.retry_after * (0.5 + self.jitter())
        error.reason = reason
        error.hold = error.retry_after if self.hold_ignored and now < window.pacing_until else 0.0
        error.tenant = tenant
        return error

    async def hold(self, error: Overloaded, remaining: float | None, size: int = 0) -> None:
        """Wait before answering a refusal that `_shed` marked to be held (the tenant's callers ignore
        the retry-after): at most HOLD_FRACTION of the call's `remaining` seconds and HOLD_MARGIN before
        its deadline (the server's clock: the client's is a transit earlier), for a request of at most
        MAX_HELD_BYTES, while the tenant holds less than an even split of MAX_HELD among the tenants
        held now. The retry-after it then carries is what is left of it. Anything else returns at once."""
        hold = getattr(error, "hold", 0.0)
        if remaining is not None:
            hold = min(hold, remaining * HOLD_FRACTION, remaining - HOLD_MARGIN)
        tenant = getattr(error, "tenant", "")
        if hold <= 0 or size > MAX_HELD_BYTES or self.held >= MAX_HELD:
            return
        if self.held_by[tenant] >= MAX_HELD / (len(self.held_by) + (tenant not in self.held_by)):
            return
        self.held_by[tenant] += 1
        try:
            await asyncio.sleep(hold)
        finally:
            self.held_by[tenant] -= 1
            if not self.held_by[tenant]:
                del self.held_by[tenant]
        metrics.REFUSALS_HELD.labels(tenant).inc()
        error.retry_after = max(0.001, error.retry_after - hold)
        error.message += (f" (answered after {hold:.2f} s: this tenant's calls were refused more often than its "
                          "retry-after-ms allows for, so the gateway waits it out for its callers)")

    def _roll(self, window: _TenantWindow, now: float) -> None:
        """Every RETRY_WINDOW per tenant: the next retry-after. Callers ~ admitted rate x latency + shed rate x
        retry-after (Little's law); spread them so SHED_PER_ADMIT calls are shed per admitted one. It rises at
        once and falls smoothly; a flood (EARLY_SHED in a window) is answered before the window ends, since
        until then every shed caller comes back within RETRY_MIN and the refusals alone take the CPU. Not
        shed in the last window: halve it."""
        elapsed = now - window.started
        if elapsed < RETRY_WINDOW and (window.shed < EARLY_SHED or elapsed < EARLY_WINDOW):
            return
        self._ignoring(window, now, elapsed)
        if window.shed:
            admitted, shed = window.admitted / elapsed, window.shed / elapsed
            latency = window.latency / window.finished if window.finished else 0.0
            callers = admitted * latency + shed * window.retry_after
            wanted = callers / (SHED_PER_ADMIT * max(admitted, 1.0))
            smoothed = wanted if wanted > window.retry_after else 0.5 * window.retry_after + 0.5 * wanted
            window.retry_after = min(RETRY_MAX, max(RETRY_MIN, smoothed))
        else:
            window.retry_after = max(RETRY_MIN, window.retry_after / 2)
        window.admitted = window.shed = window.finished = 0
        window.latency = 0.0
        window.started = now

    @staticmethod
    def _ignoring(window: _TenantWindow, now: float, elapsed: float) -> None:
        """Hold the tenant's refusals for PACING_SECONDS once, for IGNORED_SECONDS, every window saw it shed
        at least IGNORED_RATE times a second and IGNORED_RATIO times as often as admitted although it had
        been told to back off (a retry-after above the minimum); at once if it was held within
        REPEAT_SECONDS. (While held, its callers cannot come back sooner than told, whether they would or
        not, so holding lapses after PACING_SECONDS and a tenant that floods again is caught again.)"""
        if (window.retry_after > RETRY_MIN and window.shed >= IGNORED_RATE * elapsed
                and window.shed > IGNORED_RATIO * max(window.admitted, 1)):
            if window.suspect_since is None:
                window.suspect_since = window.started
            if now - window.suspect_since >= IGNORED_SECONDS or now - window.pacing_until < REPEAT_SECONDS:
                window.pacing_until = now + PACING_SECONDS
        else:
            window.suspect_since = None

    # -- the adaptive limit -------------------------------------------------------------------------------------

    def _finished(self, tenant: str, service: str, method: str, latency: float, measured: bool,
                  now: float) -> None:
        window = self._tenants.get(tenant)
        if window is not None:
            window.latency += latency
            window.finished += 1
            self._roll(window, now)
        if not measured:
            return
        key = (service, method)  # per method: a fast ping beside a slow method must not read as congestion
        fastest = self._fastest.get(key)
        if fastest is None:
            fastest = self._fastest[key] = [latency, latency]
        elif latency < fastest[0]:
            fastest[0] = latency
        baseline = max(min(fastest), 1e-6)
        self._ratios += min(MAX_RATIO, latency / baseline)
        self._samples += 1
        if now - self._window_start >= WINDOW and self._samples >= MIN_SAMPLES:
            self._update_limit(self._ratios / self._samples)
            self._window_start, self._ratios, self._samples, self._peak = now, 0.0, 0, self.total
        if now - self._baseline_start >= BASELINE_SECONDS:  # let a fastest time rise slowly; forget gone services
            self._fastest = {k: [math.inf, min(v[0], min(v) * BASELINE_RISE)] for k, v in self._fastest.items()
                             if v[0] != math.inf}
            self._baseline_start = now

    def _next_cap(self, now: float) -> None:
        """Under congestion: cap the heaviest tenants so they give up a fifth of the load (water-filling),
        never below SLACK times an even split of the best window lately; without congestion: raise the cap
        by CAP_RISE, and lift it once it is above twice the best window. A tenant alone is never capped."""
        counts = sorted(self._counts.values(), reverse=True)
        self._counts.clear()
        self._rate_start = now
        if not counts:
            self._cap = None
            return
        total = sum(counts)
        self._best = max(total, self._best * BEST_DECAY)
        if len(counts) < 2:  # the cap is about fairness between tenants; one alone is left to the limit
            self._cap = None
        elif (now < self._congested_until and total >= MIN_CAP_RATE * RATE_WINDOW
              and total - counts[0] >= OTHERS_SHARE * total):
            # (a gateway slowed down while it serves few calls is loaded by something else, and a tenant
            # making nearly every call is not crowding anyone out: no reason to cap)
            target, level = SHAVE * total, 0.0
            rest = total
            for i, c in enumerate(counts):  # the level at which sum(min(c, level)) == target
                rest -= c
                level = (target - rest) / (i + 1)
                if i + 1 == len(counts) or level >= counts[i + 1]:
                    break
            self._cap = max(level, SLACK * self._best / len(counts))
        elif self._cap is not None:
            self._cap *= CAP_RISE
            if self._cap > 2 * self._best:  # no longer holds anything back; lifting it sooner (e.g. when the
                self._cap = None            # capped tenant backs off for a moment) lets its backlog flood back

    def _update_limit(self, ratio: float) -> None:
        if ratio > TOLERANCE:
            self._congested_until = self.clock() + CONGESTION_HOLD
        gradient = max(0.5, min(1.0, TOLERANCE / ratio))
        target = self.limit * gradient + math.sqrt(self.limit)
        if self._peak < self.limit / 2:  # the limit was not what held calls back: do not grow it
            target = min(target, self.limit)
        limit = (1 - SMOOTHING) * self.limit + SMOOTHING * target
        self.limit = min(float(self.max_in_flight), max(float(self.min_in_flight), limit))


class _Slot:
    __slots__ = ("admission", "tenant", "service", "method", "measured", "started")

    def __init__(self, admission: Admission, tenant: str, service: str, measured: bool, method: str):
        self.admission, self.tenant, self.service, self.method = admission, tenant, service, method
        self.measured = measured

    def __enter__(self) -> None:
        a = self.admission
        a.in_flight[self.tenant] += 1
        a.per_service[self.service] += 1
        a.total += 1
        a._peak = max(a._peak, a.total)
        self.started = a.clock()

    def __exit__(self, exc_type, *exc) -> None:
        a = self.admission
        a.in_flight[self.tenant] -= 1
        a.per_service[self.service] -= 1
        a.total -= 1
        if not a.per_service[self.service]:
            del a.per_service[self.service]
        now = a.clock()
        a._finished(self.tenant, self.service, self.method, now - self.started, self.measured and exc_type is None,
                    now)


__all__ = ["Admission"]
