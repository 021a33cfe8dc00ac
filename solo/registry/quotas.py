"""Per-tenant quotas: how many services and how many resources a tenant may ask for.

Pure: the registry hands in what the tenant's active services request and what a deploy adds;
a deploy past a quota is refused with RESOURCE_EXHAUSTED naming the quota, the request and the
current use. Quotas come from `[quotas]`, with per-tenant overrides in `[quotas.tenants.<name>]`;
0 means no quota.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from solo.core.spec import Resources
from solo.errors import Overloaded

GIB = 1 << 30


@dataclass(frozen=True)
class Quota:
    max_services: int = 1000
    max_cpus: float = 0.0
    max_gpus: float = 0.0
    max_memory_bytes: int = 0
    max_concurrent_calls: int = 0


@dataclass(frozen=True)
class Usage:
    services: int = 0
    cpus: float = 0.0
    gpus: float = 0.0
    memory_bytes: int = 0


def usage(resources: Iterable[Resources], services: int) -> Usage:
    cpus = gpus = 0.0
    memory = 0
    for r in resources:
        cpus, gpus, memory = cpus + r.num_cpus, gpus + r.num_gpus, memory + r.memory_bytes
    return Usage(services, cpus, gpus, memory)


def _amount(value: float, memory: bool) -> str:
    return f"{value / GIB:.3g} GiB" if memory else f"{value:g}"


def check_deploy(quota: Quota, in_use: Usage, adding: Resources, replacing: Resources | None,
                 new_service: bool) -> None:
    """Refuse a deploy that would take the tenant past a quota. A replacement counts as its new
    request instead of the old one's (the old version stops once the new one serves)."""
    if new_service and in_use.services >= quota.max_services:
        raise Overloaded(f"quota max_services: the tenant has {in_use.services} services (stopped and failed ones "
                         f"included) and may have {quota.max_services}; remove some (solo stop --remove NAME) or "
                         "ask the operator for a larger quota")
    old = replacing or Resources()
    for name, used, add, sub, memory in (
            ("max_cpus", in_use.cpus, adding.num_cpus, old.num_cpus, False),
            ("max_gpus", in_use.gpus, adding.num_gpus, old.num_gpus, False),
            ("max_memory_bytes", in_use.memory_bytes, adding.memory_bytes, old.memory_bytes, True)):
        limit = getattr(quota, name)
        if limit and add > sub and used - sub + add > limit + 1e-9:
            raise Overloaded(f"quota {name}: this deploy asks for {_amount(add, memory)}, the tenant's running "
                             f"services already use {_amount(used, memory)} of {_amount(limit, memory)}; stop a "
                             "service, ask for less, or ask the operator for a larger quota")


def quota_for(config, tenant: str) -> Quota:
    """The tenant's quota: [quotas] with its [quotas.tenants.<tenant>] overrides."""
    q = config.quotas
    base = {f.name: getattr(q, f.name) for f in fields(Quota) if f.name != "max_services"}
    base["max_services"] = config.limits.max_services_per_tenant
    override = q.tenants.get(tenant)
    if override is not None:
        base.update({k: v for k, v in override.model_dump().items() if v is not None})
    return Quota(**base)


__all__ = ["Quota", "Usage", "check_deploy", "quota_for", "usage"]
