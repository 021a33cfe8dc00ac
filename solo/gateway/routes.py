"""The gateway's copy of the route table, kept current by long-polling the registry."""
from __future__ import annotations

import asyncio
import logging

from solo import metrics
from solo.core.dispatch import Dispatcher
from solo.core.routes import Route, RouteTable
from solo.errors import Unavailable

log = logging.getLogger("solo.gateway")


class RouteFollower:
    def __init__(self, registry, table: RouteTable, dispatcher: Dispatcher, poll_seconds: float = 20.0,
                 group=None, health=None):
        self.registry = registry
        self.group = group  # a gateway.group.Member when several gateway processes share the port
        self.health = health  # a gateway.health.Health, told of every answer and failure of the registry
        self.exports = group is None or group.index == 0  # the per-service figures (restarts): process 0 only
        self.table = table
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._present: set[tuple[str, str]] = set()  # the services in the table (tenant, name)

    async def start(self) -> None:
        await self._refresh(0, 0.0)
        self._task = asyncio.create_task(self._follow())

    async def _refresh(self, known: int, timeout: float) -> None:
        version, routes = await self.registry.wait_routes(known, timeout)
        if self.health is not None:
            self.health.routes_synced()
        table = [Route(**r) for r in routes]
        self.table.replace(version, table)
        if self.table.version == version:  # this answer is the table now: removed services lose their series
            present = {(r["tenant"], r["name"]) for r in routes}
            for tenant, name in self._present - present:
                metrics.forget_service(tenant, name)
            self._present = present
            if self.exports:
                metrics.SERVICES.restarts_from(table)
        metrics.ROUTE_VERSION.set(self.table.version)
        if self.group is not None:
            self.group.publish_version(self.table.version)
        async with self._changed:
            self._changed.notify_all()
        self.dispatcher.prune()

    async def _follow(self) -> None:
        while True:
            try:
                await self._refresh(self.table.version, self.poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the registry may be restarting; keep serving
                log.warning("route update failed (%s); serving the last known routes", exc)
                if self.health is not None:
                    self.health.registry_failed(isinstance(exc, Unavailable))
                await asyncio.sleep(0.5)

    async def synced(self, version: int, timeout: float = 5.0) -> None:
        """Wait until this gateway routes with at least `version` (so a deploy's reply means callable), and
        with several gateway processes until every live one does (the client's next connection may reach
        any of them)."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.table.version >= version), timeout)
            except TimeoutError:
                log.warning("route version %s not reached within %ss", version, timeout)
        if self.group is not None:
            await self.group.wait_version(version, max(0.0, deadline - asyncio.get_running_loop().time()))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
