"""Every Prometheus metric Solo exports, defined once. Label values are bounded:
tenant and service come from deployed services only (tenant alone, on the refusals held: from
authenticated callers, whose tenants the operator minted), code from the status table. A removed
service's series are dropped (`forget_service`, called when it leaves the gateway's route table)."""
from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

CALLS = Counter("solo_gateway_calls_total", "Invoke calls finished by the gateway",
                ["tenant", "service", "code"], registry=REGISTRY)
CALL_SECONDS = Histogram("solo_gateway_call_seconds", "Invoke latency seen by the gateway",
                         ["tenant", "service"], registry=REGISTRY,
                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
IN_FLIGHT = Gauge("solo_gateway_in_flight", "Invoke calls in flight", ["tenant", "service"], registry=REGISTRY)
IN_FLIGHT_LIMIT = Gauge("solo_gateway_in_flight_limit", "The gateway's current (adaptive) limit of calls in "
                        "flight; at it, each tenant keeps its fair share", registry=REGISTRY)
REFUSALS_HELD = Counter("solo_gateway_refusals_held_total", "Shed calls the gateway answered only after their "
                        "retry-after, because the tenant's callers came back before it", ["tenant"],
                        registry=REGISTRY)
ROUTE_VERSION = Gauge("solo_gateway_route_version", "Route table version the gateway follows", registry=REGISTRY)
EVENT_LOG_WRITABLE = Gauge("solo_event_log_writable", "1 when the event log's last write succeeded and it answers; "
                           "0 means deploys and stops fail closed (alert on it)", registry=REGISTRY)
EVENT_LOG_LAST_ID = Gauge("solo_event_log_last_id", "Id of the newest committed event", registry=REGISTRY)


class _Series:
    """The metric children of one (tenant, service), looked up once instead of per call."""

    def __init__(self, tenant: str, service: str):
        self.key = (tenant, service)
        self.in_flight = IN_FLIGHT.labels(tenant, service)
        self.seconds = CALL_SECONDS.labels(tenant, service)
        self.ok = CALLS.labels(tenant, service, "OK")

    def done(self, code: str, seconds: float) -> None:
        self.in_flight.dec()
        (self.ok if code == "OK" else CALLS.labels(*self.key, code)).inc()
        self.seconds.observe(seconds)


_CACHES: weakref.WeakSet[CallSeries] = weakref.WeakSet()  # every CallSeries, so forget_service reaches them


class CallSeries:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}
        _CACHES.add(self)

    def forget(self, tenant: str, service: str) -> None:
        self._series.pop((tenant, service), None)

    def get(self, tenant: str, service: str) -> _Series:
        series = self._series.get((tenant, service))
        if series is None:
            series = self._series[(tenant, service)] = _Series(tenant, service)
        return series


_PER_SERVICE = ((CALLS, ("tenant", "service", "code")), (CALL_SECONDS, ("tenant", "service")),
                (IN_FLIGHT, ("tenant", "service")))


def forget_service(tenant: str, service: str) -> None:
    """Drop every series of a removed service (a later service of that name starts from zero). A call that
    was in flight then finishes on children no longer exported."""
    for cache in list(_CACHES):
        cache.forget(tenant, service)
    for metric, names in _PER_SERVICE:
        found = {tuple(s.labels[n] for n in names) for family in metric.collect() for s in family.samples
                 if s.labels.get("tenant") == tenant and s.labels.get("service") == service}
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
        for (owner, service), child in list(CALL_SECONDS._metrics.items()):  # noqa: SLF001
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
        families = REGISTRY.collect()
    services: dict[str, dict[str, float]] = {}

    def entry(name: str) -> dict[str, float]:
        return _entry(services, name)

    for metric in families:
        for sample in metric.samples:
            if sample.labels.get("tenant") != tenant:
                continue
            service = sample.labels.get("service")
            if service is None:  # a per-tenant metric (refusals held), not a service's
                continue
            if sample.name == "solo_gateway_calls_total":
                entry(service)["calls"] += sample.value
                if sample.labels["code"] != "OK":
                    entry(service)["errors"] += sample.value
            elif sample.name == "solo_gateway_in_flight":
                entry(service)["in_flight"] += sample.value
            elif sample.name == "solo_gateway_call_seconds_sum":
                entry(service)["latency_seconds_sum"] += sample.value
    return services
