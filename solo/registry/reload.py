"""Configuration reload in the registry: the config in force, its live keys changed by `reload_config`.

The registry is the one place a reload is decided: a gateway process (the RPC, or SIGHUP to `solo up`)
loads the file and sends the result here; the registry compares it with the config in force, records a
`config.reloaded` event (fail closed: a reload that cannot be recorded changes nothing), takes over the
live keys (config_reload.LIVE), hands the event log its new retention and running services' hosts their
narrowed egress, and publishes a new config version that every gateway process follows (`wait_config`,
like the routes). Its quotas and egress checks read `self.config` at each deploy and start, so they change
at once. The config in force is also kept in `<data-dir>/config-reloaded.json`, so a registry or event log
that Ray restarts comes back with it.
"""
from __future__ import annotations

import asyncio
import logging
import time

from solo.config import SoloConfig
from solo.config_reload import RELOADED_FILE, Reloaded, capped, diff, merge_live, read_reloaded, tenant_keys
from solo.core.spec import egress_rule, parse_egress
from solo.errors import SoloError
from solo.files import write_atomic
from solo.runtime.launcher import call_host

log = logging.getLogger("solo.registry")
SYSTEM_TENANT = "_solo"  # not a tenant name (names start with a letter): only operators see its events
EGRESS_CALL_SECONDS = 10.0
EGRESS_CONCURRENCY = 32


def allowed_egress(spec, tenant: str, config: SoloConfig) -> list[str]:
    """The spec's egress rules the operator still allows its tenant: what its host lets it connect to."""
    allowed = config.runtime.tenant_egress
    granted = {egress_rule(*parse_egress(r)) for r in [*allowed.get(tenant, ()), *allowed.get("*", ())]}
    return [r for r in spec.allow_egress if r in granted]


class ReloadMixin:
    """Mixed into RegistryActor (registry/actor.py), whose constructor calls `_in_force`."""

    _config_version: int
    _config_loaded_at: float
    _config_path: str

    def _in_force(self, config: SoloConfig) -> SoloConfig:
        """At construction: the config Solo was started with, with the live keys of the last reload (if any)."""
        self._config_version, self._config_loaded_at, self._config_path = 0, time.time(), ""
        found = read_reloaded(config.data_dir / RELOADED_FILE)
        if found is None:
            return config
        self._config_version, self._config_loaded_at, self._config_path = found.version, found.loaded_at, found.path
        return merge_live(config, found.config)

    def _config_state(self) -> tuple[asyncio.Lock, asyncio.Event]:
        if getattr(self, "_config_lock", None) is None:
            self._config_lock, self._config_changed = asyncio.Lock(), asyncio.Event()
        return self._config_lock, self._config_changed

    async def config_in_force(self) -> dict:
        """For GetConfig: the whole config in force (as JSON data), its file and when it was (re)loaded."""
        return {"config": self.config.model_dump(mode="json"), "path": self._config_path,
                "loaded_at": self._config_loaded_at, "version": self._config_version}

    async def wait_config(self, known_version: int, timeout: float = 30.0) -> tuple[int, dict]:
        """(version, config in force) once the version is not `known_version` (or after `timeout`)."""
        _, changed = self._config_state()
        if known_version == self._config_version:
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                pass
        return self._config_version, self.config.model_dump(mode="json")

    async def reload_config(self, loaded: dict, path: str, who: dict | None = None) -> dict:
        """Take over the live keys of `loaded` (a whole config, as `solo up` would make it now). Returns the
        changed live keys, the keys that need a restart, the new version and when."""
        await self.start()
        new = SoloConfig.model_validate(loaded)  # checked by the gateway too: the registry trusts no caller
        lock, _ = self._config_state()
        async with lock:
            change = diff(self.config, new)
            version, now = self._config_version + 1, time.time()
            who = who or {}
            rows = [{"tenant": SYSTEM_TENANT, "type": "config.reloaded", "subject": "config",
                     "principal": who.get("principal", "solo"), "correlation_id": who.get("request_id", ""),
                     "payload": {"changed": capped(change.changed), "needs_restart": capped(change.needs_restart),
                                 "file": path[:1000], "version": version}}]
            rows += [{"tenant": tenant, "type": "config.reloaded", "subject": "config",
                      "principal": "operator", "correlation_id": who.get("request_id", ""),
                      "payload": {"changed": capped(keys), "version": version}}
                     for tenant, keys in sorted(tenant_keys(change.changed).items())]
            await self.sink.append(rows)  # not recorded: nothing changes (Unavailable to the caller)
            old, merged = self.config, merge_live(self.config, new)
            self.config = merged
            self._config_version, self._config_loaded_at, self._config_path = version, now, path
            try:
                await asyncio.to_thread(write_atomic, merged.data_dir / RELOADED_FILE,
                                        Reloaded(merged, version, now, path).to_json())
            except OSError as exc:
                log.warning("the reloaded configuration could not be kept in %s (%s): a restart of the registry "
                            "or the event log by Ray would bring back the previous one", RELOADED_FILE, exc)
            if any(k.startswith("events.") for k in change.changed):
                await self._reload_retention(merged)
            if any(k.startswith("runtime.tenant_egress") for k in change.changed):
                await self._reload_egress(old, merged)
            self._config_changed.set()
            self._config_changed = asyncio.Event()
            log.info("configuration reloaded (version %d): changed %s; needs a restart: %s", version,
                     list(change.changed) or "nothing", list(change.needs_restart) or "nothing")
            return {"changed": list(change.changed), "needs_restart": list(change.needs_restart), "loaded_at": now,
                    "version": version}

    async def _reload_retention(self, config: SoloConfig) -> None:
        events = config.events
        try:
            await self.sink.set_retention(events.retention_days, events.retention_bytes,
                                          dict(events.tenant_retention_days), events.retention_check_seconds)
        except SoloError as exc:  # down or restarting: it reads config-reloaded.json when it comes back
            log.warning("the event log did not take the new retention (%s); it will when it restarts", exc.message)

    async def _reload_egress(self, old: SoloConfig, new: SoloConfig) -> None:
        """Running services whose allowed destinations changed get them from their host at once (new connections
        are checked against them; connections already open stay). A service starting right now holds its lock:
        it is updated again once it has started (it was checked against whichever config it saw)."""
        def affected(key, spec) -> bool:
            return bool(spec.allow_egress) and allowed_egress(spec, key[0], old) != allowed_egress(spec, key[0], new)
        targets = [key for key, record in list(self.state.services.items())
                   if affected(key, record.spec) or key in self.standby and affected(key, self.standby[key].old.spec)]
        for key in targets:
            if self._lock(key).locked():
                self._spawn(self._egress_when_started(key))
        limit = asyncio.Semaphore(EGRESS_CONCURRENCY)

        async def one(key):
            async with limit:
                await self._push_egress(key)
        await asyncio.gather(*(one(k) for k in targets))

    async def _egress_when_started(self, key) -> None:
        async with self._lock(key):
            await self._push_egress(key)

    async def _push_egress(self, key) -> None:
        record, standby = self.state.services.get(key), self.standby.get(key)
        hosts = [(self.hosts.get(key), record.spec if record is not None else None)]
        if standby is not None:  # the old version kept in a swap's watch window serves again on a rollback
            hosts.append((standby.handle, standby.old.spec))
        for handle, spec in hosts:
            if handle is None or spec is None:
                continue
            try:
                await call_host(handle.set_egress.remote(allowed_egress(spec, key[0], self.config)),
                                EGRESS_CALL_SECONDS, "updating its egress rules")
            except SoloError as exc:
                log.warning("the host of %s/%s did not take its new egress rules: %s", key[0], key[1], exc.message)


__all__ = ["ReloadMixin", "SYSTEM_TENANT", "allowed_egress"]
