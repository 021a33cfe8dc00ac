"""Tenant quotas (pure): services, CPU, GPU, memory; replacements; per-tenant overrides from config."""
from __future__ import annotations

import pytest

from solo.config import load_config
from solo.core.spec import Resources, ServiceSpec
from solo.errors import Overloaded
from solo.registry.quotas import GIB, Quota, Usage, check_deploy, quota_for
from solo.registry.state import RegistryState


def test_each_quota_names_itself_the_request_and_the_use():
    quota = Quota(max_services=5, max_cpus=4, max_gpus=1, max_memory_bytes=2 * GIB)
    used = Usage(services=2, cpus=3, gpus=0, memory_bytes=GIB)
    check_deploy(quota, used, Resources(num_cpus=1), None, new_service=True)  # exactly at the quota
    with pytest.raises(Overloaded, match=r"quota max_cpus: this deploy asks for 1.5, .* already use 3 of 4"):
        check_deploy(quota, used, Resources(num_cpus=1.5), None, new_service=True)
    with pytest.raises(Overloaded, match="quota max_gpus"):
        check_deploy(quota, used, Resources(num_gpus=2), None, new_service=True)
    with pytest.raises(Overloaded, match=r"quota max_memory_bytes: this deploy asks for 1.5 GiB, .* 1 GiB of 2 GiB"):
        check_deploy(quota, used, Resources(memory_bytes=int(1.5 * GIB)), None, new_service=True)
    with pytest.raises(Overloaded, match="quota max_services: the tenant has 5 services"):
        check_deploy(quota, Usage(services=5), Resources(), None, new_service=True)
    check_deploy(Quota(), Usage(cpus=1000), Resources(num_cpus=64), None, new_service=True)  # 0: no quota


def test_a_replacement_counts_its_new_request_instead_of_the_old():
    quota = Quota(max_cpus=4)
    check_deploy(quota, Usage(cpus=4), Resources(num_cpus=3), Resources(num_cpus=3), new_service=False)
    check_deploy(quota, Usage(cpus=4), Resources(num_cpus=2), Resources(num_cpus=3), new_service=False)  # shrinking
    with pytest.raises(Overloaded):
        check_deploy(quota, Usage(cpus=4), Resources(num_cpus=4), Resources(num_cpus=3), new_service=False)


def test_quotas_come_from_config_with_tenant_overrides(tmp_path):
    path = tmp_path / "solo.toml"
    path.write_text("[limits]\nmax_services_per_tenant = 50\n[quotas]\nmax_cpus = 8\n"
                    "[quotas.tenants.acme]\nmax_cpus = 2\nmax_services = 3\nmax_concurrent_calls = 10\n")
    config = load_config(path)
    assert quota_for(config, "acme") == Quota(max_services=3, max_cpus=2, max_concurrent_calls=10)
    assert quota_for(config, "other") == Quota(max_services=50, max_cpus=8)


def test_the_registry_refuses_a_deploy_past_the_quota_and_changes_nothing():
    state = RegistryState(quota_for=lambda tenant: Quota(max_cpus=1))
    state.plan_deploy("acme", ServiceSpec(name="a", source="x", resources=Resources(num_cpus=0.75)), False)
    before = dict(state.services)
    with pytest.raises(Overloaded, match="quota max_cpus"):
        state.plan_deploy("acme", ServiceSpec(name="b", source="x", resources=Resources(num_cpus=0.5)), False)
    assert state.services == before
    state.plan_deploy("beta", ServiceSpec(name="b", source="x", resources=Resources(num_cpus=0.5)), False)
