"""Gateway process 0 exports each running service's RSS and CPU seconds (solo_service_memory_rss_bytes,
solo_service_cpu_seconds_total) by asking the registry every [gateway] usage_poll_seconds
(registry/usage.py: each host reads /proc). The series are the services the last answer listed, so a
stopped or removed service's disappear at the next poll."""
from __future__ import annotations

import asyncio
import logging

from solo import metrics
from solo.config import SoloConfig

log = logging.getLogger("solo.gateway")


def usage_poll(config: SoloConfig, group=None) -> bool:
    """Whether this gateway process polls: [gateway] usage_poll_seconds > 0, and it is process 0."""
    return config.gateway.usage_poll_seconds > 0 and (group is None or group.index == 0)


async def poll_usage(registry, every: float) -> None:
    failed = False
    while True:
        try:
            metrics.SERVICES.usage_from(await asyncio.wait_for(registry.usage(), max(10.0, every)))
            failed = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the registry is restarting or busy: the last figures stay
            if not failed:
                log.info("services' RSS and CPU not read from the registry (%s); the last figures stay", exc)
            failed = True
        await asyncio.sleep(every)


__all__ = ["poll_usage", "usage_poll"]
