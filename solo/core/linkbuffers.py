"""What a gateway's host links hold for their consumers (core/dispatch.py uses these).

`StreamBuffer` holds one streaming call's results until its consumer takes them, with their size;
`TenantBudget` adds up what waits across all the links to one tenant's services, so a tenant
with many services cannot hold many links' worth of the gateway's memory.
"""
from __future__ import annotations

import asyncio
import collections

TENANT_BUFFER = 64 << 20  # bytes of stream results waiting across all links to one tenant's services


class StreamBuffer:
    """Results of one streaming call that its consumer has not taken yet, and their size."""

    __slots__ = ("items", "bytes", "waiter")

    def __init__(self) -> None:
        self.items: collections.deque = collections.deque()
        self.bytes = 0
        self.waiter: asyncio.Future | None = None

    def put(self, item, size: int) -> None:
        self.items.append((item, size))
        self.bytes += size
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self):
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        item, size = self.items.popleft()
        self.bytes -= size
        return item, size


class TenantBudget:
    """Stream results waiting in one gateway, per tenant that owns the services (over all its links): a
    tenant with many services must not hold many links' worth. Past TENANT_BUFFER the tenant's links stop
    reading; they read again once it is down to half."""

    def __init__(self, limit: int = TENANT_BUFFER):
        self.limit = limit
        self.held: dict[str, int] = {}
        self.paused: dict[str, set] = {}

    def add(self, tenant: str, size: int) -> None:
        held = self.held[tenant] = self.held.get(tenant, 0) + size
        if held <= 0:
            del self.held[tenant]
        if size < 0 and held <= self.limit // 2:
            for link in list(self.paused.pop(tenant, ())):
                link._maybe_resume()

    def over(self, tenant: str) -> bool:
        return self.held.get(tenant, 0) > self.limit

    def low(self, tenant: str) -> bool:
        return self.held.get(tenant, 0) <= self.limit // 2
