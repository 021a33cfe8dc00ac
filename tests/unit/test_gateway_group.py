"""gateway/group.py without Ray or gRPC: the per-process share of limits, the shared slots, merged metrics."""
from __future__ import annotations

import os

from prometheus_client.parser import text_string_to_metric_families

from solo import metrics
from solo.config import load_config
from solo.gateway.group import GroupFile, Member, per_process


def test_rates_and_call_quotas_are_split_by_the_number_of_processes(tmp_path):
    config = load_config(None, data_dir=str(tmp_path), gateway__processes=4,
                         limits__token_rate_per_second=100, limits__tenant_rate_per_second=0,
                         limits__tenant_rates={"acme": {"rate_per_second": 8, "burst": 20}},
                         quotas__max_concurrent_calls=10,
                         quotas__tenants={"small": {"max_concurrent_calls": 1}, "big": {"max_services": 3}})
    mine = per_process(config)
    assert mine.limits.token_rate_per_second == 25
    assert mine.limits.tenant_rate_per_second == 0  # 0 = unlimited stays unlimited
    assert (mine.limits.tenant_rates["acme"].rate_per_second, mine.limits.tenant_rates["acme"].burst) == (2, 5)
    assert mine.limits.auth_failures_per_second == config.limits.auth_failures_per_second / 4
    assert mine.quotas.max_concurrent_calls == 3  # rounded up
    assert mine.quotas.tenants["small"].max_concurrent_calls == 1  # never below one call
    assert mine.quotas.tenants["big"].max_concurrent_calls is None
    assert mine.limits.max_in_flight == config.limits.max_in_flight  # per-process protections are not split
    assert per_process(load_config(None, data_dir=str(tmp_path))).limits == load_config(None, data_dir=str(tmp_path)).limits


def test_slots_are_shared_through_the_file(tmp_path):
    one = GroupFile.create(tmp_path)
    other = GroupFile(tmp_path / "gateway-group")
    one.write(1, pid=os.getpid(), route_version=1_700_000_000_000_000, metrics_port=9999, ready=True)
    slot = other.slot(1)
    assert (slot.pid, slot.route_version, slot.metrics_port, slot.ready) == (os.getpid(), 1_700_000_000_000_000,
                                                                              9999, True)
    other.write(1, route_version=1_700_000_000_000_001)
    assert one.slot(1).route_version == 1_700_000_000_000_001 and one.slot(1).metrics_port == 9999


def test_merged_metrics_label_every_series_with_its_process(tmp_path):
    member = Member(GroupFile.create(tmp_path), 0, 2, "t")  # no live peer: only this process's series
    metrics.ROUTE_VERSION.set(7)
    text = member.merged_metrics().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sample = families["solo_gateway_route_version"].samples[0]
    assert sample.labels == {"gateway_process": "0"} and sample.value == 7
    assert not any(name.endswith("_created") for name in families)
