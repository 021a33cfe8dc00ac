"""The registry actor: a thin Ray shell around RegistryState.

It owns the hosts (warm pool included), watches them for crashes, applies the restart policy,
writes events, and publishes route versions that gateways long-poll (`wait_routes`).
"""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time

from solo.config import SoloConfig
from solo.core.spec import Resources, ServiceSpec, check_egress
from solo.errors import FailedPrecondition, SoloError, Unavailable
from solo.registry.convert import record_info
from solo.registry.discovery import Discovery
from solo.registry.discovery_actor import DiscoveryMixin
from solo.registry.events import event_rows
from solo.registry.history import VersionHistory
from solo.registry.logs import LogsMixin
from solo.registry.nodeloss import NodeLossMixin, node_death
from solo.registry.quotas import quota_for
from solo.registry.recovery import RecoveryMixin, placement_of
from solo.registry.reload import ReloadMixin
from solo.registry.snapshots import SnapshotMixin, SnapshotStore
from solo.registry.specs import SpecStore
from solo.registry.state import Placement, RegistryState, ServiceRecord, acting_for
from solo.registry.swap import Standby, SwapMixin
from solo.registry.usage import UsageMixin
from solo.registry.vault import VaultMixin
from solo.runtime.event_log_actor import EventLogHandle
from solo.runtime.launcher import REGISTRY_NAME, Launcher, call_host, died_message  # noqa: F401
from solo.runtime.sandbox import sandbox_options
from solo.security import seal

log = logging.getLogger("solo.registry")


class RegistryActor(RecoveryMixin, SwapMixin, DiscoveryMixin, SnapshotMixin, NodeLossMixin, LogsMixin, VaultMixin,
                    ReloadMixin, UsageMixin):
    def __init__(self, config: dict, bind_host: str = "", control_secret: str = ""):
        """`control_secret`: what the event log asks of its callers (solo/security/control.py); it
        stays here and never goes to a host."""
        self.config = self._in_force(SoloConfig.model_validate(config))  # with a reload's live keys (reload.py)
        rt = self.config.runtime
        # Route versions keep growing across registry restarts (gateways ignore older versions):
        # start at this incarnation's start time in ms, times 1000 (never 1000 changes a millisecond).
        self.state = RegistryState(self.config.limits.max_services_per_tenant,
                                   first_route_version=int(time.time() * 1000) * 1000,
                                   quota_for=lambda tenant: quota_for(self.config, tenant))
        self._seal = seal.load_or_create(self.config.data_dir)  # hosts send their keys sealed to it
        self.launcher = Launcher(self.config.namespace, bind_host, sandbox_options(self.config.runtime),
                                 wait_for_autoscaler=rt.wait_for_autoscaler,
                                 channel={"tls_mode": self.config.tls.hosts, "tls_dir": str(self.config.node_tls_dir),
                                          "seal_to": seal.public_text(self._seal)})
        self.sink = EventLogHandle(self.config.namespace, control_secret)
        self.specs = SpecStore(self.config.data_dir / "specs")
        self.history = VersionHistory(self.config.data_dir / "history", self.config.swap.keep_versions)
        self.snapshot_files = SnapshotStore(self.config.data_dir / "snapshots")
        self._no_snapshot: dict[tuple[str, str], int] = {}  # services without snapshot(), by generation
        self._snapshot_warned: dict[tuple[str, str], tuple[int, int]] = {}  # see _snapshot_skipped
        self.standby: dict[tuple[str, str], Standby] = {}  # swaps in their watch window
        self.discovery = Discovery()
        self._secret: bytes | None = None  # for discovery tickets, see _ticket
        self.default_shape = Resources(num_cpus=rt.default_num_cpus)
        self.hosts: dict[tuple[str, str], object] = {}
        self.pool: list[tuple[object, dict]] = []
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._routes_changed = asyncio.Event()
        self._published = self.state.route_version
        self._tasks: set[asyncio.Task] = set()
        self._last_crash: dict[tuple[str, str], int] = {}  # id of each service's latest crash event
        self._started: asyncio.Task | None = None
        self._views: dict | None = None  # the checkpoint's fold, kept between checkpoints
        self._grants: set[tuple[str, str, str]] = set()  # discovery grants folded with it
        self._checkpoint_id = 0
        self._first_start_failed: dict[tuple[str, str], bool] = {}  # see deploy
        self._starting: dict[tuple[str, str], asyncio.Task] = {}  # deploys starting their host (stop cancels them)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> int:
        if self._started is None:  # the first caller rebuilds; concurrent callers wait for it
            self._started = asyncio.get_running_loop().create_task(self._rebuild(), context=contextvars.Context())
            self._started.add_done_callback(lambda _: self._spawn(self._fill_pool()))
        await asyncio.shield(self._started)
        return self.state.route_version

    def _needed_specs(self) -> dict[tuple[str, str], set[str]]:
        """The spec fingerprints each service needs: its current version's and its history's."""
        needed = {key: {r.spec.fingerprint()} for key, r in self.state.services.items() if r.spec.source}
        for path in self.history.directory.glob("*/*.json"):
            key = (path.parent.name, path.stem)
            try:
                needed.setdefault(key, set()).update(e.spec for e in self.history.list(*key))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("the history file %s is unreadable (%s)", path, exc)
        return needed

    async def _prune_specs(self, key: tuple[str, str], current: bool = True) -> None:
        """Delete the service's spec files nothing needs any more (the caller holds its lock): all but its
        current version's (not with `current=False`), the version kept in a watch window, its history's."""
        record = self.state.services.get(key)
        keep = {record.spec.fingerprint()} if record is not None and current else set()
        standby = self.standby.get(key)
        if standby is not None:
            keep.add(standby.old.spec.fingerprint())
        try:
            keep.update(e.spec for e in await asyncio.to_thread(self.history.list, *key))
            await asyncio.to_thread(self.specs.prune, key[0], key[1], keep)
        except (OSError, ValueError, TypeError) as exc:  # a later operation or start prunes again
            log.warning("pruning the spec files of %s/%s failed: %s", key[0], key[1], exc)

    def _spawn(self, coro) -> None:
        """Background work acts for Solo, not for the operation that started it (a fresh context)."""
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill_pool(self) -> None:
        while len(self.pool) < self.config.runtime.warm_pool_size:
            try:
                handle, placement = await self.launcher.start(self.default_shape, self.config.runtime.schedule_timeout_seconds)
            except SoloError:
                await asyncio.sleep(5)  # the cluster is full; try again later
                continue
            self.pool.append((handle, placement))

    async def _acquire_host(self, resources: Resources):
        if resources == self.default_shape and self.pool:
            handle, placement = self.pool.pop(0)
            self._spawn(self._fill_pool())
            return handle, placement
        return await self.launcher.start(resources, self.config.runtime.schedule_timeout_seconds)

    async def _commit(self, who: dict | None = None, strict: bool = False) -> None:
        """Write the state's queued events durably, then publish routes if they changed.

        strict: the caller undoes its change when the events cannot be written (fail closed).
        Otherwise (a crash the registry observed) the events stay queued for the next commit.
        """
        if not strict:
            self._publish()  # what already happened (a crash, a stop) is routed around at once
        events = self.state.take_events()
        if events:
            rows, crash_at = event_rows(events, who or {}, self._last_crash)
            try:
                first, _ = await self.sink.append(rows)
                self._last_crash.update({key: first + index for key, index in crash_at.items()})
                await self._note_events(events)  # Solo's lines in the services' logs (registry/logs.py)
            except SoloError as exc:
                if strict:
                    raise
                self.state.outbox[:0] = events
                log.warning("events not written yet, will retry: %s", exc.message)
        self._publish()

    def _host_key(self, sealed: object) -> str:
        """A host's key, which it sends sealed to this registry (security/seal.py)."""
        try:
            return seal.open_sealed(self._seal, sealed, "host key")
        except seal.SealError as exc:
            raise Unavailable(f"the host's answer could not be opened ({exc}); it was started for another "
                              "registry: start the service again") from None

    def _publish(self) -> None:
        if self.state.route_version != self._published:
            self._published = self.state.route_version
            self._routes_changed.set()
            self._routes_changed = asyncio.Event()

    def _lock(self, key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- RPCs ----------------------------------------------------------------------------------
    async def deploy(self, tenant: str, spec: ServiceSpec, replace: bool, who: dict | None = None) -> dict:
        await self.start()  # also after Ray restarted this actor
        acting_for.set(who or {})
        key = (tenant, spec.name)
        async with self._lock(key):
            await self._settle(key, "deployed again")
            try:
                return await self._deploy(key, tenant, spec, replace, who)
            finally:  # a refused or failed deploy leaves no spec file; a replaced version's goes
                await self._prune_specs(key, current=not self._first_start_failed.pop(key, False))

    async def _deploy(self, key, tenant: str, spec: ServiceSpec, replace: bool, who: dict | None) -> dict:
        saved = self.state.save(key)
        action, record = self.state.plan_deploy(tenant, spec, replace)  # refusals (quota, exists) write nothing
        try:
            await asyncio.to_thread(self.specs.put, tenant, spec)  # before the event that names it
        except OSError as exc:
            self.state.revert(key, saved)
            self._publish()
            raise Unavailable(f"the spec could not be stored in the data directory: {exc.strerror}") from None
        await self._undo_on_failure(key, saved, self._commit(who, strict=True))
        if action == "noop":
            return {"service": record_info(record, time.time()), "changed": False,
                    "route_version": self.state.route_version}
        previous = self.hosts.get(key) if action == "replace" else None
        starting = asyncio.ensure_future(self._start(record))
        self._starting[key] = starting  # a stop of the service ends the wait (for resources, an autoscaler) at once
        try:
            record = await starting
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # the deploy itself was cancelled
            self.state.start_failed(record, "stopped while it was starting", replacing=action == "replace")
            self._first_start_failed[key] = action == "create"
            await self._commit(who)
            raise FailedPrecondition(f"service {spec.name!r} was stopped while it was starting") from None
        except SoloError as exc:
            self.state.start_failed(record, exc.message, replacing=action == "replace")
            self._first_start_failed[key] = action == "create"  # nothing can start it again: no spec kept
            await self._commit(who)
            raise
        finally:
            if self._starting.get(key) is starting:
                del self._starting[key]
        try:
            await self._commit(who, strict=True)
        except SoloError:  # running but unrecorded: take it back so nothing is half-done
            self.launcher.kill(self.hosts.pop(key))
            if previous is not None:
                self.hosts[key] = previous
            self.state.revert(key, saved)
            self._publish()
            raise
        if previous is not None:
            self._spawn(self._stop_host(previous))
        return {"service": record_info(record, time.time()), "changed": True,
                "route_version": self.state.route_version}

    async def _load_host(self, record: ServiceRecord) -> tuple[object, Placement]:
        """A host with the record's code loaded, started and healthy (not routed yet); killed on failure."""
        spec = record.spec
        # again at every start: a restart or `solo up` after the operator took a destination away must not
        # bring the service back with it
        check_egress(spec, record.tenant, self.config.runtime.tenant_egress)
        handle, ready = await self._acquire_host(spec.resources)
        try:
            secrets = await self._sealed_secrets(record, ready)  # read again at every start, sealed to this host
            loaded = await call_host(
                handle.load.remote(record.tenant, spec.name, record.version, spec.source, spec.filename,
                                   spec.class_name, spec.env, spec.config_json, spec.labels, spec.max_concurrency,
                                   spec.resources.memory_bytes, spec.resources.num_cpus,
                                   self.config.runtime.memory_check_seconds,
                                   self._ticket(record.tenant, spec.name, ready["host"]), spec.allow_egress,
                                   secrets=secrets),
                self.config.runtime.start_timeout_seconds, f"starting service {spec.name!r}")
        except BaseException:
            self.launcher.kill(handle)
            raise
        return handle, placement_of(loaded, self._host_key(loaded["key"]))

    async def _start(self, record: ServiceRecord, restarted: bool = False, recovered: str = "") -> ServiceRecord:
        handle, placement = await self._load_host(record)
        started = self.state.started(record, placement, restarted=restarted, recovered=recovered)
        if started is None:
            self.launcher.kill(handle)
            raise Unavailable(f"service {record.name!r} was stopped or replaced while it was starting")
        record = started
        self.hosts[record.key] = handle
        self._spawn(self._watch(record.tenant, record.name, record.generation, placement.pid, handle))
        return record

    async def _watch(self, tenant: str, name: str, generation: int, pid: int, handle) -> None:
        record = self.state.services.get((tenant, name))
        placement = record.placement if record is not None and record.generation == generation else None
        node_id, node_ip = (placement.node_id, placement.node_ip) if placement and placement.pid == pid else ("", "")
        try:
            violation = await self._wait_closed(handle, node_id)
            if violation is None:
                return  # stopped on purpose
        except Exception as exc:  # noqa: BLE001 - RayActorError and friends: the process is gone
            if await self._node_gone(node_id, exc):  # not the service's doing: rescheduled, not restarted
                await self._node_lost(tenant, name, generation, pid, node_id, node_ip, node_death(exc))
            else:
                await self._crashed(tenant, name, generation, pid, died_message(exc))
            return
        # the host ended itself for breaking a limit: an event, then the policy
        policy = self.config.runtime.on_limit_exceeded
        message = (f"memory limit exceeded: the service used {violation['used_bytes'] >> 20} MiB, the limit is "
                   f"{violation['limit_bytes'] >> 20} MiB ({violation['mechanism']})")
        self.state.limit_exceeded(tenant, name, generation, policy=policy, **violation)
        await self._crashed(tenant, name, generation, pid, message,
                            max_restarts=0 if policy == "stop" else None)

    async def _crashed_in_window(self, key, standby, message: str, detected: float, generation: int,
                                 pid: int) -> None:
        """A swapped-in version died during its watch window: back to the kept one. If that is impossible
        (or the window ended meanwhile), the crash goes through the restart policy like any other."""
        async with self._lock(key):
            if self.standby.get(key) is standby and not standby.rolling_back:
                try:
                    await self._roll_back(key, f"the new version crashed: {message}", None, crashed=True,
                                          detected=detected)
                    await self._prune_specs(key)
                    return
                except SoloError as exc:
                    log.warning("rollback after a crash failed: %s", exc.message)
        await self._crashed(key[0], key[1], generation, pid, message, divert=False)

    def _max_restarts(self, tenant: str, name: str) -> int:
        record = self.state.services.get((tenant, name))
        if record is not None and record.spec.max_restarts >= 0:
            return record.spec.max_restarts
        return self.config.runtime.max_restarts

    async def _crashed(self, tenant: str, name: str, generation: int, pid: int, message: str,
                       max_restarts: int | None = None, divert: bool = True) -> None:
        standby = self.standby.get((tenant, name))
        if divert and standby is not None and standby.new_generation == generation and not standby.rolling_back:
            self._spawn(self._crashed_in_window((tenant, name), standby, message, time.monotonic(), generation, pid))
            return
        to_restart = self.state.crashed(tenant, name, generation, pid, message,
                                        self._max_restarts(tenant, name) if max_restarts is None else max_restarts)
        await self._commit()
        if to_restart is not None:
            self._spawn(self._restart(to_restart))

    async def _restart(self, record: ServiceRecord) -> None:
        rt = self.config.runtime
        delay = min(rt.restart_backoff_seconds * (2 ** (record.restarts - 1)), rt.restart_backoff_max_seconds)
        await asyncio.sleep(delay)
        async with self._lock(record.key):
            if self.state.services.get(record.key) is not record or record.state != "RESTARTING":
                return
            try:
                await self._start(record, restarted=True)
                await self._commit()
            except SoloError as exc:  # a failed restart counts like another crash (backoff, limit)
                await self._crashed(record.tenant, record.name, record.generation, 0, f"restart failed: {exc.message}")

    async def _undo_on_failure(self, key, saved, commit) -> None:
        try:
            await commit
        except SoloError:
            self.state.revert(key, saved)
            self._publish()
            raise

    async def _stop_host(self, handle) -> str:
        try:
            return await call_host(handle.stop.remote(self.config.runtime.stop_grace_seconds),
                                   self.config.runtime.stop_grace_seconds + 5, "stopping")
        except SoloError as exc:
            return exc.message
        finally:
            self.launcher.kill(handle)

    async def stop(self, tenant: str, name: str, remove: bool, who: dict | None = None) -> dict:
        await self.start()  # after a restart: answer from the rebuilt state, never an empty one
        acting_for.set(who or {})
        starting = self._starting.get((tenant, name))
        if starting is not None:  # a deploy still waiting for its host: it gives up now, then the stop proceeds
            starting.cancel()
        async with self._lock((tenant, name)):
            await self._settle((tenant, name), "stopped")
            saved = self.state.save((tenant, name))
            record = self.state.stopping(tenant, name)
            # recorded first, then routed away, so no new call reaches a draining host
            await self._undo_on_failure((tenant, name), saved, self._commit(who, strict=True))
            handle = self.hosts.pop(record.key, None)
            message = await self._stop_host(handle) if handle is not None else ""
            record = self.state.stopped(tenant, name, remove, message)
            self._no_snapshot.pop(record.key, None)
            self._snapshot_warned.pop(record.key, None)
            await asyncio.to_thread(self.snapshot_files.forget, tenant, name)
            if remove:
                await asyncio.to_thread(self.history.forget, tenant, name)
                await self._prune_specs((tenant, name), current=False)  # its folder goes with it
                self.discovery.grants.pop((tenant, name), None)  # a later service of that name is not exported
            await self._commit(who)
            return {"service": record_info(record, time.time()), "route_version": self.state.route_version}

    async def get(self, tenant: str, name: str) -> dict:
        await self.start()  # after a restart: answer from the rebuilt state, never an empty one
        record = self.state.get(tenant, name)
        stats = await self._stats(record)
        return record_info(record, time.time(), stats)

    async def list(self, tenant: str) -> list[dict]:
        await self.start()  # after a restart: answer from the rebuilt state, never an empty one
        now = time.time()
        return [record_info(r, now) for r in self.state.list(tenant)]

    async def _stats(self, record: ServiceRecord) -> dict:
        handle = self.hosts.get(record.key)
        if handle is None or record.state != "RUNNING":
            return {}
        try:
            return await call_host(handle.stats.remote(), 2.0, "stats")
        except SoloError:
            return {}

    async def wait_routes(self, known_version: int, timeout: float = 30.0) -> tuple[int, list[dict]]:
        await self.start()
        if known_version == self.state.route_version:
            try:
                await asyncio.wait_for(self._routes_changed.wait(), timeout)
            except TimeoutError:
                pass
        routes = [dataclasses.asdict(r) for r in self.state.routes()]
        for route in routes:
            route["grants"] = self.discovery.granted_to(route["tenant"], route["name"])
        return self.state.route_version, routes

    async def shutdown(self) -> int:
        """Stop every service (stop hooks run), empty the pool, flush events. Used by `solo down`."""
        handles = list(self.hosts.values()) + [h for h, _ in self.pool] + [s.handle for s in self.standby.values()]
        self.pool.clear()
        self.standby.clear()
        self.state.reserved.clear()
        self.state.suspend_all("solo down")
        self.hosts.clear()
        # the suspensions are written before any host is stopped: a shutdown cut short (a host that does not stop,
        # `solo down` giving up) must still leave them in the log, or the next `solo up` would bring the services
        # back as if they had crashed
        await self._flush_events()
        await asyncio.gather(*(self._stop_host(h) for h in handles), return_exceptions=True)
        await self._flush_events()
        return len(handles)

    async def _flush_events(self, attempts: int = 5) -> None:
        for _ in range(attempts):
            await self._commit()
            if not self.state.outbox:
                return
            await asyncio.sleep(0.5)
        log.warning("%d events could not be written before shutdown", len(self.state.outbox))

    async def ping(self) -> bool:
        return True
