"""The configuration RPCs (operator only): GetConfig and ReloadConfig, and each gateway process's live config.

A reload (this RPC on any gateway process, or SIGHUP to `solo up`) loads the config the way `solo up` made it
(config_reload.ConfigSource: the file, then the flags) in the process that received it and hands it to the
registry, which decides what changes (registry/reload.py) and publishes a new config version. Every gateway
process follows that version by long-polling the registry, as it follows the routes (`LiveConfig`), and
applies the live keys to its own share (gateway/group.per_process): rates, quotas of calls in flight, the
egress rules checked at deploy. The reply comes once every live gateway process applies the new version.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from solo._proto import solo_pb2 as pb
from solo.config import SoloConfig
from solo.config_reload import ConfigSource, merge_live, to_toml
from solo.errors import FailedPrecondition, PermissionDenied
from solo.gateway.group import per_process
from solo.gateway.status import rpc
from solo.registry.quotas import quota_for
from solo.security.capabilities import Request
from solo.security.ratelimit import Rate

log = logging.getLogger("solo.gateway")
SYNC_SECONDS = 10.0  # how long a reload waits for every gateway process to apply it


def _operator(principal, what: str) -> None:
    if not principal.operator:
        raise PermissionDenied(f"{what} is for the operator only: use the operator token (`solo up` writes it to "
                               "<data-dir>/operator.token); a tenant's token cannot read or change Solo's "
                               "configuration")


class LiveConfig:
    """This gateway process's live config: follows the registry's config version and applies its live keys to
    the servicer; `reload` is what ReloadConfig and SIGHUP run."""

    def __init__(self, registry, source: ConfigSource | None = None, group=None, poll_seconds: float = 20.0):
        self.registry = registry
        self.source = source  # None: this Solo was not started by `solo up` (or load_config): nothing to reload
        self.group = group  # a gateway.group.Member when several gateway processes share the port
        self.poll_seconds = poll_seconds
        self.version = -1
        self.servicer = None
        self.make_limiter: Callable | None = None
        self.task: asyncio.Task | None = None
        self._changed = asyncio.Condition()

    async def attach(self, servicer, make_limiter: Callable) -> None:
        """Take the reloads since `solo up` (a process that starts or restarts after one gets its values; before
        any, the config it was given stands), then follow the config in force."""
        self.servicer, self.make_limiter = servicer, make_limiter
        version, data = await self.registry.wait_config(-1, 0.0)
        if version:
            self.apply(SoloConfig.model_validate(data))
        self._applied(version)
        self.task = asyncio.create_task(self._follow())

    def _applied(self, version: int) -> None:
        self.version = version
        if self.group is not None:
            self.group.publish_config(version)

    async def _refresh(self, known: int, timeout: float) -> None:
        version, data = await self.registry.wait_config(known, timeout)
        if version != self.version:
            self.apply(SoloConfig.model_validate(data))
            self._applied(version)
            async with self._changed:
                self._changed.notify_all()

    async def _follow(self) -> None:
        while True:
            try:
                await self._refresh(self.version, self.poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the registry may be restarting; keep what is in force
                log.warning("config update failed (%s); keeping the configuration in force", exc)
                await asyncio.sleep(0.5)

    def apply(self, in_force: SoloConfig) -> None:
        """The live keys of the whole gateway's config, as this process's share, into the servicer."""
        servicer = self.servicer
        config = merge_live(servicer.config, per_process(in_force, self.group.index if self.group else 0))
        servicer.config = config  # deploys read quotas, egress and limits from it
        servicer.limiter.set_rates(self.make_limiter(config))
        limits = config.limits
        servicer.auth_failures.rate = Rate(limits.auth_failures_per_second,
                                           limits.auth_failures_burst or 2 * limits.auth_failures_per_second)
        servicer.admission.set_limit_for(lambda tenant: quota_for(servicer.config, tenant).max_concurrent_calls)

    async def synced(self, version: int, timeout: float = SYNC_SECONDS) -> None:
        """Until this process, and every other live gateway process, applies at least `version`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version >= version), timeout)
            except TimeoutError:
                log.warning("config version %s not applied within %ss", version, timeout)
        if self.group is not None:
            await self.group.wait_config(version, max(0.0, deadline - loop.time()))

    async def reload(self, who: dict) -> dict:
        """Load the config again (defaults < file < the flags of `solo up`), let the registry apply its live keys,
        and wait until every gateway process has. A file that does not load changes nothing (InvalidRequest
        naming the key and the problem)."""
        if self.source is None:
            raise FailedPrecondition("this Solo was not started from a configuration file and flags (`solo up`), so "
                                     "there is nothing to reload; restart it with `solo up --config FILE`")
        loaded = await asyncio.to_thread(self.source.load)
        result = await self.registry.reload_config(loaded.model_dump(mode="json"), self.source.file(), who)
        await self.synced(result["version"])
        return result

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


class ConfigRpcs:
    """Mixed into GatewayServicer (gateway/servicer.py); `live_config` is set by gateway/server.py."""

    live_config: LiveConfig

    @rpc(lambda r: Request("config"))
    async def GetConfig(self, request, context, principal):
        _operator(principal, "solo config show (GetConfig)")
        found = await self.registry.config_in_force()
        source = self.live_config.source
        path = found["path"] or (await asyncio.to_thread(source.file) if source is not None else "")
        return pb.GetConfigResponse(toml=to_toml(SoloConfig.model_validate(found["config"])), path=path,
                                    loaded_at=found["loaded_at"])

    @rpc(lambda r: Request("config"))
    async def ReloadConfig(self, request, context, principal):
        _operator(principal, "solo config reload (ReloadConfig)")
        result = await self.live_config.reload(self._who(principal, context))
        return pb.ReloadConfigResponse(changed=result["changed"], needs_restart=result["needs_restart"],
                                       loaded_at=result["loaded_at"])


__all__ = ["ConfigRpcs", "LiveConfig"]
