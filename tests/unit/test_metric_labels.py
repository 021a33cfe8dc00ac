"""Label values stay bounded whatever callers and services do (solo/metrics.py, against the real registry):
methods only from the route's list and at most MAX_METHOD_LABELS per service, shed reasons and breaker states
from fixed lists, per-service figures replaced whole, a removed service's series gone for its grantees too."""
from __future__ import annotations

import uuid

from solo import metrics
from solo.core.routes import Route
from solo.gateway.breaker import Breakers


def sample_labels(name: str) -> list[dict]:
    return [s.labels for family in metrics.REGISTRY.collect() for s in family.samples if s.name == name]


def fresh() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def test_methods_are_labelled_only_from_the_route_and_capped():
    tenant, service = fresh(), "svc"
    listed = tuple(f"m{i}" for i in range(metrics.MAX_METHOD_LABELS + 8))
    series = metrics.CallSeries().get(tenant, service)
    for method in (*listed, "not_listed", "other", *(f"x{i}" for i in range(100))):
        series.in_flight.inc()
        series.done("OK", 0.001, method, listed)
    methods = {s["method"] for s in sample_labels("solo_gateway_call_duration_seconds_count")
               if s["tenant"] == tenant}
    assert methods == {*listed[:metrics.MAX_METHOD_LABELS], "other"}
    other = [s for family in metrics.REGISTRY.collect() for s in family.samples
             if s.name == "solo_gateway_call_duration_seconds_count" and s.labels.get("tenant") == tenant
             and s.labels["method"] == "other"]
    assert other[0].value == 8 + 1 + 1 + 100
    assert metrics.tenant_summary(tenant)[service]["calls"] == len(listed) + 102
    metrics.forget_service(tenant, service)
    assert not [s for s in sample_labels("solo_gateway_call_duration_seconds_count") if s["tenant"] == tenant]


def test_shed_reasons_and_breaker_states_come_from_fixed_lists():
    assert metrics.shed_reason("tenant_quota") == "tenant_quota"
    assert metrics.shed_reason("made up by anyone") == "other"
    tenant = fresh()
    metrics.breaker_changed(tenant, "svc", "open")
    metrics.breaker_changed(tenant, "svc", "sideways")
    assert sorted(s["to"] for s in sample_labels("solo_gateway_breaker_transitions_total") if s["tenant"] == tenant) \
        == ["open", "other"]


def test_a_removed_service_loses_its_grantees_series_too():
    owner, caller = fresh(), fresh()
    cache = metrics.CallSeries()
    for tenant, service in ((owner, "kv"), (caller, f"{owner}/kv"), (caller, "kv")):
        series = cache.get(tenant, service)
        series.in_flight.inc()
        series.done("OK", 0.01, "get", ("get",))
    metrics.breaker_changed(caller, f"{owner}/kv", "open")
    metrics.forget_service(owner, "kv")
    left = {(s["tenant"], s["service"]) for name in ("solo_gateway_calls_total", "solo_gateway_in_flight",
                                                     "solo_gateway_breaker_transitions_total")
            for s in sample_labels(name) if s.get("tenant") in (owner, caller)}
    assert left == {(caller, "kv")}  # the caller's own service of the same name stays
    metrics.forget_service(caller, "kv")


def test_service_figures_are_the_last_update_and_a_silent_host_keeps_its_last_figures():
    a, b = fresh(), fresh()
    figures = metrics.ServiceFigures()
    figures.restarts_from([Route(a, "x", "1", "RUNNING", restarts=2), Route(b, "y", "1", "FAILED", restarts=3)])
    figures.usage_from([{"tenant": a, "service": "x", "rss_bytes": 100, "cpu_seconds": 1.5},
                        {"tenant": b, "service": "y", "rss_bytes": None, "cpu_seconds": None}])

    def values():
        return {(f.name, s.labels["tenant"]): s.value for f in figures.collect() for s in f.samples}
    assert values() == {("solo_service_restarts", a): 2, ("solo_service_restarts", b): 3,
                        ("solo_service_memory_rss_bytes", a): 100, ("solo_service_cpu_seconds", a): 1.5}
    figures.usage_from([{"tenant": a, "service": "x", "rss_bytes": None, "cpu_seconds": None}])  # no answer
    assert values()[("solo_service_memory_rss_bytes", a)] == 100
    figures.usage_from([])  # no longer running: gone
    figures.restarts_from([Route(a, "x", "2", "RUNNING")])
    assert values() == {("solo_service_restarts", a): 0}
    figures.forget(a, "x")
    assert values() == {}


def test_breakers_open_counts_only_open_breakers_of_routed_versions():
    tenant = fresh()
    breakers = Breakers(failures=1, open_seconds=60, clock=lambda: 0.0)
    routed = {("svc", "2")}
    metrics.BREAKERS_OPEN.watch(breakers, lambda key: (key[1], key[2]) in routed)
    breakers.record((tenant, "svc", "2"), True, "down")
    breakers.record((tenant, "svc", "1"), True, "down")  # an old version's: not reported
    breakers.record((tenant, "other", "2"), False)
    assert [(s["tenant"], s["service"]) for s in sample_labels("solo_gateway_breakers_open")
            if s["tenant"] == tenant] == [(tenant, "svc")]
    breakers.record((tenant, "svc", "2"), False)  # the probe succeeded: closed
    assert not [s for s in sample_labels("solo_gateway_breakers_open") if s["tenant"] == tenant]
