"""Slots for long-lived streams (Watch): at most so many open on one gateway process, and at most so many of
one tenant, so a tenant cannot pin the gateway (or the REST port's connections) with streams that never end."""
from __future__ import annotations

import contextlib

from solo.errors import Overloaded


class StreamSlots:
    def __init__(self, what: str, total: int, per_tenant: int, total_key: str, tenant_key: str):
        self.what, self.total, self.per_tenant = what, total, per_tenant
        self.total_key, self.tenant_key = total_key, tenant_key
        self.open: dict[str, int] = {}

    def set_limits(self, total: int, per_tenant: int) -> None:
        """New limits (a config reload): streams already open stay; new ones are counted against them."""
        self.total, self.per_tenant = total, per_tenant

    @contextlib.contextmanager
    def slot(self, tenant: str):
        """Hold one of `tenant`'s slots for the body; RESOURCE_EXHAUSTED when the gateway or the tenant is full."""
        if sum(self.open.values()) >= self.total:
            raise Overloaded(f"this gateway already serves {self.total} {self.what} ({self.total_key}); retry later")
        if self.open.get(tenant, 0) >= self.per_tenant:
            raise Overloaded(f"your tenant already has {self.per_tenant} {self.what} open on this gateway "
                             f"({self.tenant_key}); end one first")
        self.open[tenant] = self.open.get(tenant, 0) + 1
        try:
            yield
        finally:
            self.open[tenant] -= 1
            if not self.open[tenant]:
                del self.open[tenant]


__all__ = ["StreamSlots"]
