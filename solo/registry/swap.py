"""Hot swap and rollback, the registry actor's part (mixed into RegistryActor).

A swap: the new version is loaded, started and health-checked in its own host while the old one
serves; the old host is then frozen (new calls are answered MOVED and re-sent by the gateways; the
ones in flight finish) and its snapshot() is handed to the new version's restore(); the new one
must pass its health check; then the route moves and every gateway follows at once. During the
watch window the frozen old host is kept: if the new version crashes, fails its health check or
fails too many calls, the new version's state is handed back (when it can still give it) and the
route returns to the old one. If the tenant's quota cannot hold both versions, the old one is
stopped first (stop_start mode) and there is no watch window.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from solo.core.spec import ServiceSpec
from solo.errors import FailedPrecondition, InvalidRequest, NotFound, ServiceFailed, SoloError, Unavailable
from solo.registry.convert import record_info
from solo.registry.history import pick
from solo.registry.state import ServiceRecord, acting_for
from solo.runtime.launcher import call_host

log = logging.getLogger("solo.registry")
RETIRE_GRACE = 2.0  # seconds a replaced, frozen version lives on after the switch


def _checked(spec: ServiceSpec, may_read: list[str] | None, changed: str) -> None:
    """The spec about to run names no secret outside those the caller's token was checked for."""
    if may_read is not None and not set(spec.secrets) <= set(may_read):
        raise FailedPrecondition(f"{changed}; retry (your token is checked again for the secrets it now names)")


@dataclass
class Standby:
    """The previous version, frozen with its state, during a swap's watch window."""
    old: ServiceRecord
    handle: object
    state: str | None  # its snapshot at the switch (JSON text)
    new_generation: int
    until: float
    rolling_back: bool = False


class SwapMixin:
    standby: dict

    # -- RPCs ----------------------------------------------------------------------------------
    async def swap(self, tenant: str, name: str, source: str, filename: str, class_name: str, version: str,
                   watch_seconds: float | None = None, who: dict | None = None,
                   may_read: list[str] | None = None) -> dict:
        """`may_read`: the secrets the caller's token was checked for (None: not a caller's swap); the new code
        gets the service's secrets as they are under the lock, so a key added meanwhile refuses the swap."""
        await self.start()
        acting_for.set(who or {})
        key = (tenant, name)
        async with self._lock(key):
            await self._settle(key, "another swap started")
            current = self.state.get(tenant, name)
            _checked(current.spec, may_read, "the service's secrets changed while your swap waited")
            spec = replace(current.spec, source=source, filename=filename, class_name=class_name, version=version)
            watch = self.config.swap.watch_seconds if watch_seconds is None else watch_seconds
            if watch > self.config.swap.max_watch_seconds:
                raise InvalidRequest(f"watch_seconds {watch:g} is above [swap] max_watch_seconds "
                                     f"({self.config.swap.max_watch_seconds:g})")
            try:
                return await self._swap(current, spec, watch, who, kind="swap")
            finally:  # a refused or failed swap leaves no spec file behind
                await self._prune_specs(key)

    async def rollback(self, tenant: str, name: str, to_version: str = "", who: dict | None = None,
                       may_read: list[str] | None = None) -> dict:
        """`may_read`: as for swap, the secrets checked for the version rolled back to (rollback_secret_keys)."""
        await self.start()
        acting_for.set(who or {})
        key = (tenant, name)
        async with self._lock(key):
            try:
                return await self._rollback(key, tenant, name, to_version, who, may_read)
            finally:
                await self._prune_specs(key)

    async def rollback_secret_keys(self, tenant: str, name: str, to_version: str = "") -> list[str]:
        """The secrets the version a rollback would run is deployed with (it gets their newest values); the
        errors a rollback would give when there is no such version."""
        await self.start()
        standby, _past, spec = await self._rollback_target((tenant, name), tenant, name, to_version)
        return list((standby.old.spec if standby is not None else spec).secrets)

    async def _rollback_target(self, key, tenant: str, name: str, to_version: str):
        """(the standby to go back to, None, None) or (None, the kept version, its spec)."""
        current = self.state.get(tenant, name)
        standby = self.standby.get(key)
        if standby is not None and to_version in ("", standby.old.version):
            return standby, None, None
        kept = await asyncio.to_thread(self.history.list, tenant, name)
        past = pick(kept, to_version, current.version)
        if past is None:
            versions = ", ".join(e.version for e in kept) or "none"
            what = f"version {to_version!r} of {name!r} is" if to_version else f"no earlier version of {name!r} is"
            raise NotFound(f"{what} not kept (kept versions: {versions}); `solo status {name}` shows the "
                           "current one")
        spec = await asyncio.to_thread(self.specs.get, past.spec, tenant, name)
        if spec is None:
            raise FailedPrecondition(f"the code of version {past.version} is missing from the data directory")
        return None, past, spec.with_version(past.version)

    async def _rollback(self, key, tenant: str, name: str, to_version: str, who, may_read=None) -> dict:
        changed = "the secrets of the version to roll back to changed while your rollback waited"
        if (standby := self.standby.get(key)) is not None and to_version in ("", standby.old.version):
            _checked(standby.old.spec, may_read, changed)
            return await self._roll_back(key, "asked for by hand", who)
        await self._settle(key, "rolled back by hand to another version")
        _none, past, spec = await self._rollback_target(key, tenant, name, to_version)
        _checked(spec, may_read, changed)
        current = self.state.get(tenant, name)
        if current.state == "RUNNING":  # like a swap: the current state goes along
            return await self._swap(current, spec, self.config.swap.watch_seconds, who, kind="rollback")
        await asyncio.to_thread(self.specs.put, tenant, spec)  # as named by its event (the version is set)
        return await self._start_past(current, spec, past.state, who)

    # -- the swap ------------------------------------------------------------------------------
    async def _swap(self, current: ServiceRecord, spec: ServiceSpec, watch: float, who, kind: str) -> dict:
        key = current.key
        started = time.monotonic()
        saved = self.state.save(key)
        current, new, mode = self.state.plan_swap(current.tenant, spec, kind)  # refusals write nothing
        try:
            await asyncio.to_thread(self.specs.put, current.tenant, spec)  # before the event that names it
        except OSError as exc:
            self.state.revert(key, saved)
            self._publish()
            raise Unavailable(f"the spec could not be stored in the data directory: {exc.strerror}") from None
        await self._undo_on_failure(key, saved, self._commit(who, strict=True))
        old_handle = self.hosts.get(key)
        if mode == "stop_start":
            return await self._swap_stop_start(current, new, old_handle, who, started, kind)
        try:
            handle, placement = await self._load_host(new)
        except SoloError as exc:
            await self._swap_failed(current, new, f"the new version did not start: {exc.message}", who)
            raise type(exc)(f"swap rejected, version {current.version} keeps serving: {exc.message}",
                            exception_type=exc.exception_type) from None
        self.state.swap_ready(new, current, time.monotonic() - started)
        try:
            frozen = await self._freeze(old_handle, "the old version")
        except SoloError as exc:
            self.launcher.kill(handle)
            await self._thaw(old_handle)
            await self._swap_failed(current, new, f"the old version's state could not be taken: {exc.message}", who)
            raise type(exc)(f"swap abandoned, version {current.version} keeps serving: {exc.message}",
                            exception_type=exc.exception_type) from None
        try:
            note = await self._hand_over(handle, frozen)
            await self._check_health(handle, "the new version")
        except SoloError as exc:
            self.launcher.kill(handle)
            await self._thaw(old_handle)
            await self._swap_failed(current, new, exc.message, who)
            raise type(exc)(f"swap abandoned, version {current.version} keeps serving: {exc.message}",
                            exception_type=exc.exception_type) from None
        self.state.swapped(current, new, placement, note)
        self.hosts[key] = handle
        try:
            await self._commit(who, strict=True)
        except SoloError:  # switched but unrecorded: undo, so nothing is half-done
            self.launcher.kill(handle)
            self.hosts[key] = old_handle
            self.state.revert(key, saved)
            await self._thaw(old_handle)
            self._publish()
            raise
        switched = time.monotonic() - started
        self._spawn(self._watch(new.tenant, new.name, new.generation, placement.pid, handle))
        if watch > 0:
            standby = Standby(current, old_handle, frozen["state"], new.generation, time.monotonic() + watch)
            self.standby[key] = standby
            self.state.reserved[key] = current.spec.resources  # the kept version counts against the quota
            self._spawn(self._watch_window(key, standby, handle))
        else:
            await self._retire(current, old_handle, frozen["state"])
            self.state.swap_succeeded(new, current.version)
            await self._commit(who)
        return self._swap_answer(new, current, note, mode, watch, switched, kind)

    async def _swap_stop_start(self, current, new, old_handle, who, started: float, kind: str) -> dict:
        """The quota holds one version at a time: freeze and stop the old one, then start the new one
        with its state; if that fails, the old version is started again with the same state."""
        key = current.key
        try:
            frozen = await self._freeze(old_handle, "the old version")
        except SoloError as exc:
            await self._thaw(old_handle)
            await self._swap_failed(current, new, f"the old version's state could not be taken: {exc.message}", who)
            raise
        await self._stop_host(old_handle)
        handle = None
        try:
            handle, placement = await self._load_host(new)
            note = await self._hand_over(handle, frozen)
            await self._check_health(handle, "the new version")
        except SoloError as exc:
            if handle is not None:
                self.launcher.kill(handle)
            reason = f"the new version did not start: {exc.message}"
            try:  # the old version again, with the state it had
                back_handle, back_placement = await self._load_host(current)
                try:
                    if frozen["state"] is not None:
                        await call_host(back_handle.restore.remote(frozen["state"]),
                                        self.config.runtime.start_timeout_seconds, "restoring the old version's state")
                except SoloError:
                    self.launcher.kill(back_handle)
                    raise
            except SoloError as again:  # neither runs: the old version goes through the crash policy
                await self._swap_failed(current, new, f"{reason}; starting version {current.version} again with "
                                        f"its state failed too: {again.message}", who)
                pid = current.placement.pid if current.placement else 0
                await self._crashed(current.tenant, current.name, current.generation, pid,
                                    f"a stop-then-start swap failed and the old version could not start again: "
                                    f"{again.message}")
                raise type(exc)(f"swap failed, and version {current.version} could not start again with its state "
                                f"({again.message}); it is restarting fresh: {exc.message}",
                                exception_type=exc.exception_type) from None
            self.state.started(current, back_placement, recovered="the swap failed; started again with its state")
            self.hosts[key] = back_handle
            self._spawn(self._watch(current.tenant, current.name, current.generation, back_placement.pid,
                                    back_handle))
            await self._swap_failed(current, new, reason, who)
            raise type(exc)(f"swap failed, version {current.version} was started again with its state: "
                            f"{exc.message}", exception_type=exc.exception_type) from None
        self.state.swapped(current, new, placement, note)
        self.hosts[key] = handle
        self._spawn(self._watch(new.tenant, new.name, new.generation, placement.pid, handle))
        await asyncio.to_thread(self.history.add, current.tenant, current.name, current.version,
                                current.spec.fingerprint(), frozen["state"])
        self.state.swap_succeeded(new, current.version)
        await self._commit(who)
        return self._swap_answer(new, current, note, "stop_start", 0.0, time.monotonic() - started, kind)

    async def _freeze(self, handle, which: str) -> dict:
        """Stop `which` taking calls, let its running calls finish, and take its state (see ServiceHost.freeze)."""
        drain = self.config.swap.drain_seconds
        return await call_host(handle.freeze.remote(drain, self.config.swap.max_state_bytes), drain + 10,
                               f"taking {which}'s state")

    async def _hand_over(self, handle, frozen: dict) -> str:
        """Give the new host the frozen state; returns what happened, in words (shown to the user)."""
        if frozen["state"] is None:
            return ("fresh: the old version has no snapshot()" if not frozen["has_snapshot"]
                    else "fresh: the old version's snapshot() returned None")
        restored = await call_host(handle.restore.remote(frozen["state"]), self.config.runtime.start_timeout_seconds,
                                   "restoring the state into the new version")
        return "handed over" if restored else "not handed over: the new version has no restore(); it starts fresh"

    async def _check_health(self, handle, what: str) -> None:
        healthy, why = await call_host(handle.health.remote(), 10.0, f"the health check of {what}")
        if not healthy:
            raise ServiceFailed(f"{what} failed its health check after taking over the state: {why}")

    async def _thaw(self, handle) -> None:
        try:
            await call_host(handle.thaw.remote(), 10.0, "resuming the old version")
        except SoloError as exc:
            log.warning("could not resume a frozen host: %s", exc.message)

    async def _swap_failed(self, current: ServiceRecord, new: ServiceRecord, reason: str, who) -> None:
        self.state.swap_failed(current, new, reason)
        await self._commit(who)

    async def _retire(self, old: ServiceRecord, handle, state: str | None) -> None:
        """The previous version is no longer needed: keep its code and state for rollbacks, stop its host
        (after RETIRE_GRACE, still frozen: callers that had not followed the switch yet get MOVED, and
        re-send, rather than a connection torn down under them)."""
        self._spawn(self._stop_later(handle))
        try:
            await asyncio.to_thread(self.history.add, old.tenant, old.name, old.version, old.spec.fingerprint(),
                                    state)
        except OSError as exc:
            log.warning("could not keep version %s of %s in the history: %s", old.version, old.name, exc)

    async def _stop_later(self, handle) -> None:
        await asyncio.sleep(RETIRE_GRACE)
        await self._stop_host(handle)

    def _swap_answer(self, new, previous, note: str, mode: str, watch: float, seconds: float, kind: str) -> dict:
        return {"service": record_info(new, time.time()), "previous_version": previous.version, "state": note,
                "mode": mode, "watch_seconds": watch, "switch_seconds": round(seconds, 4), "kind": kind,
                "from_version": previous.version, "reason": "asked for by hand" if kind == "rollback" else "",
                "route_version": self.state.route_version}

    # -- the watch window ----------------------------------------------------------------------
    async def _watch_window(self, key, standby: Standby, handle) -> None:
        cfg = self.config.swap
        base = await self._counts(handle)
        while time.monotonic() < standby.until:
            await asyncio.sleep(min(cfg.health_check_seconds, max(0.0, standby.until - time.monotonic())))
            if self.standby.get(key) is not standby or standby.rolling_back:
                return
            reason = ""
            try:
                healthy, why = await call_host(handle.health.remote(), max(2.0, 4 * cfg.health_check_seconds),
                                               "health check")
                if not healthy:
                    reason = f"the new version failed its health check: {why}"
            except SoloError as exc:
                if self.standby.get(key) is not standby or standby.rolling_back:
                    return  # it crashed: _crashed rolls back
                reason = f"the new version failed its health check: {exc.message}"
            if not reason:
                counts = await self._counts(handle)
                calls, errors = counts[0] - base[0], counts[1] - base[1]
                if calls >= cfg.min_calls and errors / calls >= cfg.max_error_rate:
                    reason = (f"the new version failed {errors} of {calls} calls, at or above the "
                              f"[swap] max_error_rate of {cfg.max_error_rate:g}")
            if reason:
                detected = time.monotonic()
                async with self._lock(key):
                    if self.standby.get(key) is standby and not standby.rolling_back:
                        await self._roll_back(key, reason, None, detected=detected)
                        await self._prune_specs(key)
                return
        async with self._lock(key):
            if self.standby.get(key) is standby and not standby.rolling_back:
                await self._settle(key, "")
                await self._prune_specs(key)

    @staticmethod
    async def _counts(handle) -> tuple[int, int]:
        try:
            stats = await call_host(handle.stats.remote(), 5.0, "stats")
            return stats["calls"], stats.get("failed", stats["errors"])
        except SoloError:
            return 0, 0

    async def _settle(self, key, why: str) -> None:
        """End a watch window keeping the new version (it passed, or something else supersedes the window)."""
        standby = self.standby.pop(key, None)
        self.state.reserved.pop(key, None)
        if standby is None:
            return
        record = self.state.services.get(key)
        await self._retire(standby.old, standby.handle, standby.state)
        if record is not None and record.generation == standby.new_generation:
            self.state.swap_succeeded(record, standby.old.version)
            if why:
                self.state.outbox[-1].payload["early"] = why
        await self._commit()

    async def _roll_back(self, key, reason: str, who, crashed: bool = False, detected: float | None = None) -> dict:
        """Traffic returns to the kept previous version (the lock is held). The new version's state
        goes back with it when the new version can still give it; else the state as at the switch.
        `detected`: when the failure was noticed (monotonic), for the event's `seconds`."""
        detected = time.monotonic() if detected is None else detected
        standby = self.standby[key]
        standby.rolling_back = True
        failed = self.state.services[key]
        new_handle = None if crashed else self.hosts.get(key)
        note = "the state as at the switch (the new version is gone)" if crashed else "the state as at the switch"
        if new_handle is not None:
            try:
                frozen = await self._freeze(new_handle, "the new version")
                if frozen["state"] is not None:
                    restored = await call_host(standby.handle.restore.remote(frozen["state"]),
                                               self.config.runtime.start_timeout_seconds,
                                               "handing the state back to the previous version")
                    note = "handed back from the new version" if restored else note
            except SoloError as exc:
                note = f"the state as at the switch (the new version's could not be handed back: {exc.message})"
        try:
            await call_host(standby.handle.thaw.remote(), 10.0, "resuming the previous version")
        except SoloError as exc:  # the kept version is gone too: the new one stays, under the restart policy
            self.standby.pop(key, None)
            self.state.reserved.pop(key, None)
            self.state.rollback_failed(failed, standby.old.version, reason, exc.message)
            await self._commit(who)
            if new_handle is not None:
                await self._thaw(new_handle)
            raise FailedPrecondition(f"cannot roll back: the previous version's process is gone ({exc.message})") \
                from None
        self.standby.pop(key, None)
        self.state.reserved.pop(key, None)
        back = self.state.rolled_back(failed, standby.old, reason, note, seconds=time.monotonic() - detected)
        self.hosts[key] = standby.handle
        await self._commit(who)
        if new_handle is not None:
            self._spawn(self._stop_later(new_handle))
        await asyncio.to_thread(self.history.add, failed.tenant, failed.name, failed.version,
                                failed.spec.fingerprint(), None)
        return {"service": record_info(back, time.time()), "from_version": failed.version, "reason": reason,
                "state": note, "route_version": self.state.route_version}

    async def _start_past(self, current: ServiceRecord, spec: ServiceSpec, state: str | None, who) -> dict:
        """Rolling back a service that is not running: start the past version with its kept state."""
        key = current.key
        if current.state in ("STARTING", "RESTARTING", "STOPPING"):
            raise FailedPrecondition(f"service {current.name!r} is {current.state}; wait until it settles")
        self.state.check_start(current.tenant, spec)
        generation = self.state.next_generation(key)
        back = ServiceRecord(current.tenant, current.name, spec, spec.version, generation, "STARTING",
                             current.created_at)
        handle, placement = await self._load_host(back)
        note = "fresh: no state was kept for that version"
        if state is not None:
            try:
                note = await self._hand_over(handle, {"state": state, "has_snapshot": True})
            except SoloError:
                self.launcher.kill(handle)
                raise
        back = self.state.rolled_back(current, back, "asked for by hand", note.replace("handed over", "its kept "
                                                                                       "state restored"), placement)
        self.hosts[key] = handle
        self._spawn(self._watch(back.tenant, back.name, back.generation, placement.pid, handle))
        await self._commit(who)
        return {"service": record_info(back, time.time()), "from_version": current.version,
                "reason": "asked for by hand", "state": note, "route_version": self.state.route_version}
