"""Every Prometheus metric Solo exports, defined once, named per Prometheus' conventions (units in the
name, `_total` on counters). Label values are bounded: tenant and service come from deployed services
only (tenant alone, on the shed and held refusals: from authenticated callers, whose tenants the
operator minted), method from the methods the service's route lists (at most MAX_METHOD_LABELS per
service, anything else "other"), code from the status table, reason and `to` from fixed lists. A
removed service's series are dropped (`forget_service`, called when it leaves the gateway's route
table); the per-service figures the gateway learns from the registry (restarts, RSS, CPU) are replaced
whole at each update, so a removed service's disappear with it."""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

MAX_METHOD_LABELS = 32  # distinct `method` values per (tenant, service); calls of any other method: "other"
OTHER = "other"
SHED_REASONS = ("tenant_quota", "service_queue", "gateway_limit", "fair_share")  # gateway/admission.py
BREAKER_STATES = ("open", "half_open", "closed")  # gateway/breaker.py

CALLS = Counter("solo_gateway_calls_total", "Invoke and InvokeStream calls finished by the gateway",
                ["tenant", "service", "code"], registry=REGISTRY)
CALL_DURATION = Histogram("solo_gateway_call_duration_seconds", "Invoke and InvokeStream latency seen by the "
                          "gateway, per method the service's route lists (others: \"other\")",
                          ["tenant", "service", "method"], registry=REGISTRY,
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
IN_FLIGHT = Gauge("solo_gateway_in_flight", "Invoke calls in flight", ["tenant", "service"], registry=REGISTRY)
IN_FLIGHT_LIMIT = Gauge("solo_gateway_in_flight_limit", "The gateway's current (adaptive) limit of calls in "
                        "flight; at it, each tenant keeps its fair share", registry=REGISTRY)
SHED = Counter("solo_gateway_shed_total", "Calls the gateway's admission refused (RESOURCE_EXHAUSTED), by reason: "
               + ", ".join(SHED_REASONS), ["tenant", "reason"], registry=REGISTRY)
REFUSALS_HELD = Counter("solo_gateway_refusals_held_total", "Shed calls the gateway answered only after their "
                        "retry-after, because the tenant's callers came back before it", ["tenant"],
                        registry=REGISTRY)
BREAKER_TRANSITIONS = Counter("solo_gateway_breaker_transitions_total", "Circuit breaker state changes of a "
                              "caller's calls to a service, by the state entered (open, half_open, closed)",
                              ["tenant", "service", "to"], registry=REGISTRY)
ROUTE_VERSION = Gauge("solo_gateway_route_version", "Route table version the gateway follows", registry=REGISTRY)
READY = Gauge("solo_gateway_ready", "1 when this gateway is ready (/ready answers 200, grpc health SERVING): the "
              "registry answers, the routes are synced, the event log is writable and it is not stopping",
              registry=REGISTRY)
EVENT_LOG_WRITABLE = Gauge("solo_event_log_writable", "1 when the event log's last write succeeded and it answers; "
                           "0 means deploys and stops fail closed (alert on it)", registry=REGISTRY)
EVENT_LOG_LAST_ID = Gauge("solo_event_log_last_id", "Id of the newest committed event", registry=REGISTRY)


def shed_reason(reason: str) -> str:
    return reason if reason in SHED_REASONS else OTHER


def breaker_changed(tenant: str, service: str, state: str) -> None:
    BREAKER_TRANSITIONS.labels(tenant, service, state if state in BREAKER_STATES else OTHER).inc()


class ServiceFigures:
    """The per-service figures the gateway learns from the registry rather than counts: restarts of the current
    deployment (from the route table) and each running service's resident memory and CPU seconds (polled,
    gateway/usage.py). Each update replaces its map whole, so the series are the services the registry lists now.
    Only one gateway process exports them (process 0), so summing over `gateway_process` counts each once."""

    def __init__(self) -> None:
        self._restarts: dict[tuple[str, str], int] = {}
        self._usage: dict[tuple[str, str], tuple[float, float]] = {}

    def restarts_from(self, routes: Iterable) -> None:
        """`routes`: the whole route table (objects with tenant, name, restarts)."""
        self._restarts = {(r.tenant, r.name): int(r.restarts) for r in routes}

    def usage_from(self, entries: Iterable[dict]) -> None:
        """`entries`: {tenant, service, rss_bytes, cpu_seconds} of every running service; one whose figures are
        None (its host did not answer this time) keeps its last ones."""
        usage = {}
        for e in entries:
            key = (e["tenant"], e["service"])
            if e.get("rss_bytes") is None or e.get("cpu_seconds") is None:
                if key in self._usage:
                    usage[key] = self._usage[key]
                continue
            usage[key] = (float(e["rss_bytes"]), float(e["cpu_seconds"]))
        self._usage = usage

    def forget(self, tenant: str, service: str) -> None:
        self._restarts = {k: v for k, v in self._restarts.items() if k != (tenant, service)}
        self._usage = {k: v for k, v in self._usage.items() if k != (tenant, service)}

    def collect(self):
        restarts = CounterMetricFamily("solo_service_restarts", "Restarts after a crash of the service's current "
                                       "deployment (a new deploy starts from 0), from the route table",
                                       labels=["tenant", "service"])
        for (tenant, service), count in sorted(self._restarts.items()):
            restarts.add_metric([tenant, service], count)
        rss = GaugeMetricFamily("solo_service_memory_rss_bytes", "Resident memory of a running service's host and "
                                "cell processes", labels=["tenant", "service"])
        cpu = CounterMetricFamily("solo_service_cpu_seconds", "CPU seconds (user + system) of a running service's "
                                  "host and cell processes since they started", labels=["tenant", "service"])
        for (tenant, service), (rss_bytes, cpu_seconds) in sorted(self._usage.items()):
            rss.add_metric([tenant, service], rss_bytes)
            cpu.add_metric([tenant, service], cpu_seconds)
        return [restarts, rss, cpu]


SERVICES = ServiceFigures()
REGISTRY.register(SERVICES)


class BreakerStates:
    """solo_gateway_breakers_open{tenant, service}: how many of a caller's circuit breakers of a service (one per
    version) are open or half-open now, read from each gateway's Breakers at scrape time; only breakers of the
    version the route table has (`live`), so a version swapped out while its breaker was open is not reported."""

    def __init__(self) -> None:
        self._sources: list[tuple[weakref.ref, Callable[[tuple], bool]]] = []

    def watch(self, breakers, live: Callable[[tuple], bool]) -> None:
        self._sources = [s for s in self._sources if s[0]() is not None] + [(weakref.ref(breakers), live)]

    def collect(self):
        counts: dict[tuple[str, str], int] = {}
        for ref, live in list(self._sources):
            breakers = ref()
            if breakers is None:
                continue
            for key in breakers.not_closed():
                if live(key):
                    counts[key[:2]] = counts.get(key[:2], 0) + 1
        family = GaugeMetricFamily("solo_gateway_breakers_open", "Circuit breakers open or half-open now, of a "
                                   "caller's calls to a service (current version)", labels=["tenant", "service"])
        for (tenant, service), count in sorted(counts.items()):
            family.add_metric([tenant, service], count)
        return [family]


BREAKERS_OPEN = BreakerStates()
REGISTRY.register(BREAKERS_OPEN)


class _Series:
    """The metric children of one (tenant, service), looked up once instead of per call."""

    def __init__(self, tenant: str, service: str):
        self.key = (tenant, service)
        self.in_flight = IN_FLIGHT.labels(tenant, service)
        self.ok = CALLS.labels(tenant, service, "OK")
        self._durations: dict[str, object] = {}  # method -> histogram child, at most MAX_METHOD_LABELS
        self._other = None

    def duration(self, method: str, methods: tuple[str, ...] = ()):
        """The histogram child of `method`: its own when `methods` (the route's) lists it and this service has
        fewer than MAX_METHOD_LABELS methods labelled yet (swaps may bring new names), else "other"."""
        child = self._durations.get(method)
        if child is None:
            if method in methods and method != OTHER and len(self._durations) < MAX_METHOD_LABELS:
                child = self._durations[method] = CALL_DURATION.labels(*self.key, method)
            else:
                if self._other is None:
                    self._other = CALL_DURATION.labels(*self.key, OTHER)
                child = self._other
        return child

    def done(self, code: str, seconds: float, method: str = OTHER, methods: tuple[str, ...] = ()) -> None:
        self.in_flight.dec()
        (self.ok if code == "OK" else CALLS.labels(*self.key, code)).inc()
        self.duration(method, methods).observe(seconds)


_CACHES: weakref.WeakSet[CallSeries] = weakref.WeakSet()  # every CallSeries, so forget_service reaches them


class CallSeries:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}
        _CACHES.add(self)

    def forget(self, tenant: str, service: str) -> None:
        self._series.pop((tenant, service), None)
        for key in [k for k in self._series if k[1] == f"{tenant}/{service}"]:  # callers it was granted to
            del self._series[key]

    def get(self, tenant: str, service: str) -> _Series:
        series = self._series.get((tenant, service))
        if series is None:
            series = self._series[(tenant, service)] = _Series(tenant, service)
        return series


_PER_SERVICE = ((CALLS, ("tenant", "service", "code")), (CALL_DURATION, ("tenant", "service", "method")),
                (IN_FLIGHT, ("tenant", "service")), (BREAKER_TRANSITIONS, ("tenant", "service", "to")))


def forget_service(tenant: str, service: str) -> None:
    """Drop every series of a removed service, the owner's and those of other tenants it was granted to (their
    `service` label is "<owner>/<name>"); a later service of that name starts from zero. A call that was in
    flight then finishes on children no longer exported."""
    for cache in list(_CACHES):
        cache.forget(tenant, service)
    SERVICES.forget(tenant, service)
    granted = f"{tenant}/{service}"
    for metric, names in _PER_SERVICE:
        found = {tuple(s.labels[n] for n in names) for family in metric.collect() for s in family.samples
                 if (s.labels.get("tenant") == tenant and s.labels.get("service") == service)
                 or s.labels.get("service") == granted}
        for values in found:
            try:
                metric.remove(*values)
            except KeyError:
                pass


def _entry(services: dict, name: str) -> dict[str, float]:
    return services.setdefault(name, {"calls": 0, "errors": 0, "in_flight": 0, "latency_seconds_sum": 0.0})


def _own_summary(tenant: str) -> dict[str, dict[str, float]] | None:
    """This process's figures for `tenant`, read from the labelled metrics' children directly rather than by
    collecting every tenant's samples (a few microseconds per series instead of building every bucket of every
    histogram: GetMetrics must not let a tenant make the gateway burn CPU). None if prometheus_client's
    internals are not what this expects."""
    try:
        services: dict[str, dict[str, float]] = {}
        for (owner, service, code), child in list(CALLS._metrics.items()):  # noqa: SLF001 - see the docstring
            if owner == tenant:
                value = child._value.get()  # noqa: SLF001
                _entry(services, service)["calls"] += value
                if code != "OK":
                    _entry(services, service)["errors"] += value
        for (owner, service), child in list(IN_FLIGHT._metrics.items()):  # noqa: SLF001
            if owner == tenant:
                _entry(services, service)["in_flight"] += child._value.get()  # noqa: SLF001
        for (owner, service, _method), child in list(CALL_DURATION._metrics.items()):  # noqa: SLF001
            if owner == tenant:
                _entry(services, service)["latency_seconds_sum"] += child._sum.get()  # noqa: SLF001
        return services
    except (AttributeError, TypeError, ValueError):
        return None


def tenant_summary(tenant: str, families=None) -> dict[str, dict[str, float]]:
    """Per-service calls, errors, in-flight and latency sum for one tenant, read from this process's metrics, or
    from `families` (samples collected, e.g. from several gateway processes)."""
    if families is None:
        own = _own_summary(tenant)
        if own is not None:
            return own
        families = [CALLS.collect()[0], IN_FLIGHT.collect()[0], CALL_DURATION.collect()[0]]
    services: dict[str, dict[str, float]] = {}

    def entry(name: str) -> dict[str, float]:
        return _entry(services, name)

    for metric in families:
        for sample in metric.samples:
            if sample.labels.get("tenant") != tenant:
                continue
            service = sample.labels.get("service")
            if service is None:  # a per-tenant metric (shed, refusals held), not a service's
                continue
            if sample.name == "solo_gateway_calls_total":
                entry(service)["calls"] += sample.value
                if sample.labels["code"] != "OK":
                    entry(service)["errors"] += sample.value
            elif sample.name == "solo_gateway_in_flight":
                entry(service)["in_flight"] += sample.value
            elif sample.name == "solo_gateway_call_duration_seconds_sum":
                entry(service)["latency_seconds_sum"] += sample.value
    return services


def names() -> dict[str, tuple[str, ...]]:
    """Every sample name this module exports (histograms: _bucket, _sum, _count) -> its label names: what the
    dashboards and alert rules under cluster/ may use (tests/unit/test_dashboards.py)."""
    found: dict[str, tuple[str, ...]] = {}
    for metric in (CALLS, CALL_DURATION, IN_FLIGHT, IN_FLIGHT_LIMIT, SHED, REFUSALS_HELD, BREAKER_TRANSITIONS,
                   ROUTE_VERSION, READY, EVENT_LOG_WRITABLE, EVENT_LOG_LAST_ID):
        labels = tuple(metric._labelnames)  # noqa: SLF001 - prometheus_client keeps no public accessor
        base = metric._name  # noqa: SLF001
        if metric._type == "counter":  # noqa: SLF001
            found[f"{base}_total"] = labels
        elif metric._type == "histogram":  # noqa: SLF001
            found[f"{base}_bucket"] = (*labels, "le")
            found[f"{base}_sum"] = found[f"{base}_count"] = labels
        else:
            found[base] = labels
    for family in [*SERVICES.collect(), *BREAKERS_OPEN.collect()]:
        suffix = "_total" if family.type == "counter" else ""
        found[family.name + suffix] = ("tenant", "service")
    return found
