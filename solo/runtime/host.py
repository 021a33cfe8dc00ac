"""ServiceHost: the Ray actor that hosts one service version (the Ray shell around it).

It starts empty (so a warm pool of hosts can wait for work), then `load()` puts a tenant's
source into it. Calls arrive over the host's own TCP call channel (host_server.py); Ray is used for
placement, lifecycle and control calls only.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import time

from solo import api
from solo.api import context_from
from solo.errors import FailedPrecondition, InvalidRequest, ServiceFailed, SoloError
from solo.runtime import limits
from solo.runtime.host_server import HostChannel, start_host_server
from solo.runtime.instance import ServiceInstance
from solo.runtime.peer import Discoverer


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ServiceHost:
    def __init__(self, bind_host: str = ""):
        import ray  # the host is a Ray actor; Ray is already imported in this process

        self._bind_host = bind_host or ray.util.get_node_ip_address()
        self._node_id = ray.get_runtime_context().get_node_id()
        self._name = ray.get_runtime_context().get_actor_name() or ""
        self._key = secrets.token_urlsafe(24)
        self._channel = HostChannel(self._key)
        self._server = None
        self._port = 0
        self._closed = asyncio.Event()
        self._load_lock = asyncio.Lock()
        self.instance: ServiceInstance | None = None
        self._violation: dict | None = None  # set when the host ended itself for breaking a limit
        self._watchdog: asyncio.Task | None = None
        self._limits = ""

    async def ready(self) -> dict:
        if self._server is None:
            self._server, self._port = await start_host_server(self._channel, self._bind_host)
        return {"address": f"{self._bind_host}:{self._port}", "key": self._key, "pid": os.getpid(),
                "node_id": self._node_id, "node_ip": self._bind_host, "host": self._name}

    async def describe(self) -> dict | None:
        """What a rebuilt registry needs to take this host over (None when nothing is loaded)."""
        if self.instance is None:
            return None
        return {**await self.ready(), "methods": sorted(self.instance.methods),
                "class_name": self.instance.class_name, "started_at": self.instance.started_at,
                "limits": self._limits}

    async def load(self, tenant: str, name: str, version: str, source: str, filename: str, class_name: str,
                   env: dict, config_json: str, labels: dict, max_concurrency: int, memory_bytes: int = 0,
                   num_cpus: float = 0.0, check_seconds: float = 0.1, discovery_ticket: str = "") -> dict:
        async with self._load_lock:
            if self.instance is not None:
                raise FailedPrecondition("this host already runs a service")
            placement = await self.ready()
            # limits first, so the service's imports count; the host's own footprint (Python, Ray) does not:
            # the watchdog measures growth above it, and a cgroup charges only what is allocated after joining
            baseline = limits.rss_bytes()
            applied = limits.apply(os.getpid(), self._name or f"host-{os.getpid()}", memory_bytes, num_cpus)
            self._limits = applied.describe()
            os.environ.update(env)
            if discovery_ticket:  # solo.discover() inside the service, as this service
                import ray
                api._discoverer = Discoverer(tenant, name, self._name, discovery_ticket,
                                             ray.get_runtime_context().namespace)
            context = context_from(tenant, name, version, config_json, labels)
            instance = await ServiceInstance.load(source, filename, class_name, context, max_concurrency)
            healthy, why = await instance.healthy()
            if not healthy:
                await instance.close()
                raise ServiceFailed(f"{instance.class_name} started but its health check failed: {why}")
            self.instance = instance
            self._channel.instance = instance
            if memory_bytes:
                self._watchdog = asyncio.get_running_loop().create_task(
                    self._watch_memory(baseline, memory_bytes, check_seconds, applied.memory))
            return {**placement, "methods": sorted(self.instance.methods), "class_name": self.instance.class_name,
                    "started_at": self.instance.started_at, "limits": self._limits}

    async def _watch_memory(self, baseline: int, limit: int, every: float, mechanism: str) -> None:
        """Sample RSS; once the service uses more than `limit` above the host's baseline, stop serving
        and end this process, telling why (wait_closed)."""
        while not self._closed.is_set():
            rss = limits.rss_bytes()
            if rss - baseline > limit:
                self._violation = {"limit": "memory", "used_bytes": rss - baseline, "limit_bytes": limit,
                                   "rss_bytes": rss, "baseline_bytes": baseline, "mechanism": mechanism}
                if self._server is not None:
                    self._server.close()
                self._closed.set()  # wait_closed returns the violation to the registry...
                await asyncio.sleep(0.5)
                os._exit(137)  # ...then the memory goes back to the machine at once
            await asyncio.sleep(every)

    # -- hot swap ------------------------------------------------------------------------------
    async def freeze(self, drain_seconds: float, max_state_bytes: int = 64 << 20) -> dict:
        """Stop taking calls (they are answered MOVED and re-sent by the gateway), let the ones in flight
        finish, then snapshot the state. Thawed again when the calls do not finish in time.

        Returns {"state": JSON text or None (no snapshot()), "has_snapshot": bool}."""
        instance = self._require()
        self._channel.moved = True
        deadline = time.monotonic() + drain_seconds
        while instance.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if instance.in_flight:
            self._channel.moved = False
            raise FailedPrecondition(f"{instance.in_flight} call(s) were still running after {drain_seconds:g}s, "
                                     "so the state could not be taken without losing their updates; the old "
                                     "version keeps serving. Retry, or raise [swap] drain_seconds")
        has_snapshot = instance.has_hook("snapshot")
        state = await instance.hook("snapshot") if has_snapshot else None
        if state is None:
            return {"state": None, "has_snapshot": has_snapshot}
        try:
            text = json.dumps(state)
        except (TypeError, ValueError) as exc:
            self._channel.moved = False
            raise InvalidRequest(f"{instance.class_name}.snapshot() must return JSON-compatible data "
                                 f"(dicts, lists, strings, numbers): {exc}") from None
        if len(text) > max_state_bytes:
            self._channel.moved = False
            raise InvalidRequest(f"{instance.class_name}.snapshot() returned {len(text) >> 20} MiB of JSON, more than "
                                 f"[swap] max_state_bytes ({max_state_bytes >> 20} MiB); keep large data outside the "
                                 "service's memory or ask the operator for a larger limit")
        return {"state": text, "has_snapshot": True}

    async def thaw(self) -> None:
        """Serve calls again (a swap was abandoned or rolled back to this version)."""
        self._channel.moved = False

    async def restore(self, state: str) -> bool:
        """Hand the previous version's snapshot to restore(); False when the service has no restore()."""
        instance = self._require()
        if not instance.has_hook("restore"):
            return False
        await instance.hook("restore", json.loads(state))
        return True

    def _require(self) -> ServiceInstance:
        if self.instance is None:
            raise FailedPrecondition("no service is loaded on this host")
        return self.instance

    async def stats(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        inst = self.instance
        return {"calls": inst.calls if inst else 0, "errors": inst.errors if inst else 0,
                "failed": inst.failed if inst else 0,
                "in_flight": inst.in_flight if inst else 0, "rss_bytes": _rss_bytes(),
                "cpu_seconds": usage.ru_utime + usage.ru_stime, "pid": os.getpid()}

    async def health(self) -> tuple[bool, str]:
        if self.instance is None:
            return True, "idle"
        return await self.instance.healthy()

    async def stop(self, grace_seconds: float = 5.0) -> str:
        """Drain in-flight calls (up to the grace period), run the stop hook, close the server."""
        message = ""
        if self.instance is not None:
            deadline = time.monotonic() + grace_seconds
            while self.instance.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            try:
                await asyncio.wait_for(self.instance.close(), max(0.1, deadline - time.monotonic()))
            except SoloError as exc:
                message = exc.message
            except asyncio.TimeoutError:
                message = "stop() did not return within the grace period"
        if self._server is not None:
            self._server.close()
        self._closed.set()
        return message

    async def wait_closed(self) -> dict | None:
        """Returns when the host is stopped (None) or ended itself for breaking a limit (what and by how
        much); raises (via Ray) when the process dies."""
        await self._closed.wait()
        return self._violation
