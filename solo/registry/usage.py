"""Each running service's resident memory and CPU seconds for the gateway's metrics
(solo_service_memory_rss_bytes, solo_service_cpu_seconds_total): gateway process 0 asks every
[gateway] usage_poll_seconds (gateway/usage.py). Each host reads its own and its cell's figures from
/proc (`ServiceHost.usage`, the cell is not asked), a few at a time with a short deadline, so a slow or
hostile service costs one missing figure, not the poll."""
from __future__ import annotations

import asyncio

from solo.runtime.launcher import call_host

USAGE_SECONDS = 2.0  # a host's deadline to answer
USAGE_CONCURRENCY = 32  # hosts asked at once


class UsageMixin:
    """Mixed into RegistryActor (registry/actor.py)."""

    async def usage(self) -> list[dict]:
        """{tenant, service, rss_bytes, cpu_seconds} of every RUNNING service; the figures are None for a host
        that did not answer in time (the gateway keeps its last ones)."""
        await self.start()
        running = [(r.tenant, r.name, self.hosts.get(r.key)) for r in list(self.state.services.values())
                   if r.state == "RUNNING"]
        limit = asyncio.Semaphore(USAGE_CONCURRENCY)

        async def one(tenant: str, name: str, handle) -> dict:
            figures: dict = {}
            if handle is not None:
                async with limit:
                    try:
                        figures = await call_host(handle.usage.remote(), USAGE_SECONDS, "usage")
                    except Exception:  # noqa: BLE001 - gone, slow, or a host from before `usage` existed
                        figures = {}
            return {"tenant": tenant, "service": name, "rss_bytes": figures.get("rss_bytes"),
                    "cpu_seconds": figures.get("cpu_seconds")}
        return list(await asyncio.gather(*(one(*r) for r in running)))


__all__ = ["UsageMixin"]
