"""Service discovery (pure): registrations with a TTL, and grants that export a service to another tenant.

Deployed services are discoverable under their name without registering; `RegisterService` adds
endpoints Solo does not run (an address, a version, labels) that live while they heartbeat (register
again with the same instance id) within their TTL. Everything is scoped to the tenant: another
tenant sees a service only through a grant from its owner, and then only that service.

Registrations are not written to the event log one heartbeat at a time: only their first
registration, their removal and their expiry are events. They are not rebuilt after a registry
restart (their owners register again at the next heartbeat); grants are, from their events.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from solo.errors import InvalidRequest, NotFound, Overloaded

MAX_TTL = 24 * 3600.0
MAX_REGISTRATIONS_PER_TENANT = 1_000
MAX_GRANTS_PER_SERVICE = 100
MAX_GRANTS_PER_TENANT = 1_000


@dataclass
class Registration:
    tenant: str
    name: str
    instance: str
    version: str
    address: str
    labels: dict[str, str]
    ttl: float
    expires_at: float
    registered_at: float


@dataclass
class Discovery:
    registrations: dict[tuple[str, str, str], Registration] = field(default_factory=dict)
    grants: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (owner, name) -> grantee tenants
    counts: dict[str, int] = field(default_factory=dict)  # registrations per tenant

    # -- registrations --------------------------------------------------------------------------
    def register(self, tenant: str, name: str, instance: str, version: str, address: str, labels: dict,
                 ttl: float, now: float) -> tuple[Registration, bool]:
        """Register or heartbeat; returns (registration, new). An unknown instance id is registered anew
        (after a registry restart its owner's next heartbeat brings it back)."""
        if not 0 < ttl <= MAX_TTL:
            raise InvalidRequest(f"ttl_seconds must be above 0 and at most {MAX_TTL:g}, not {ttl:g}")
        key = (tenant, name, instance) if instance else None
        current = self.registrations.get(key) if key else None
        if current is not None:
            current.version, current.address, current.labels = version, address, dict(labels)
            current.ttl, current.expires_at = ttl, now + ttl
            return current, False
        if self.counts.get(tenant, 0) >= MAX_REGISTRATIONS_PER_TENANT:
            raise Overloaded(f"the tenant has {MAX_REGISTRATIONS_PER_TENANT} registrations, the most it may have; "
                             "deregister some or let them expire")
        instance = instance or secrets.token_hex(8)
        registration = Registration(tenant, name, instance, version, address, dict(labels), ttl, now + ttl, now)
        self.registrations[(tenant, name, instance)] = registration
        self.counts[tenant] = self.counts.get(tenant, 0) + 1
        return registration, True

    def deregister(self, tenant: str, name: str, instance: str) -> Registration:
        registration = self.registrations.pop((tenant, name, instance), None)
        if registration is None:
            raise NotFound(f"no registration {instance!r} of {name!r}; it may have expired already")
        self.counts[tenant] -= 1
        return registration

    def expire(self, now: float) -> list[Registration]:
        gone = [r for r in self.registrations.values() if r.expires_at <= now]
        for r in gone:
            del self.registrations[(r.tenant, r.name, r.instance)]
            self.counts[r.tenant] -= 1
        return gone

    def registered(self, tenant: str, name: str = "") -> list[Registration]:
        return sorted((r for r in self.registrations.values() if r.tenant == tenant and (not name or r.name == name)),
                      key=lambda r: (r.name, r.registered_at))

    # -- grants ----------------------------------------------------------------------------------
    def grant(self, owner: str, name: str, grantee: str) -> bool:
        if grantee == owner:
            raise InvalidRequest("a tenant always sees its own services; grant to another tenant")
        holders = self.grants.get((owner, name), set())
        if grantee in holders:
            return False
        if len(holders) >= MAX_GRANTS_PER_SERVICE or \
                sum(len(h) for (o, _), h in self.grants.items() if o == owner) >= MAX_GRANTS_PER_TENANT:
            raise Overloaded(f"at most {MAX_GRANTS_PER_SERVICE} grants per service and {MAX_GRANTS_PER_TENANT} per "
                             "tenant; revoke some first")
        self.grants.setdefault((owner, name), set()).add(grantee)
        return True

    def revoke(self, owner: str, name: str, grantee: str) -> bool:
        holders = self.grants.get((owner, name), set())
        if grantee not in holders:
            return False
        holders.discard(grantee)
        if not holders:
            del self.grants[(owner, name)]
        return True

    def visible(self, caller: str, owner: str, name: str) -> bool:
        """Whether `caller` may see (and call) `owner`'s service `name`."""
        return caller == owner or caller in self.grants.get((owner, name), ())

    def granted_to(self, owner: str, name: str) -> tuple[str, ...]:
        return tuple(sorted(self.grants.get((owner, name), ())))

    def grants_of(self, owner: str) -> list[tuple[str, str]]:
        """(service, grantee) pairs the owner has given."""
        return sorted((n, g) for (o, n), holders in self.grants.items() if o == owner for g in holders)

    def exported_to(self, caller: str) -> list[tuple[str, str]]:
        """(owner, service) pairs other tenants exported to `caller`."""
        return sorted((o, n) for (o, n), holders in self.grants.items() if caller in holders)


def matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())
