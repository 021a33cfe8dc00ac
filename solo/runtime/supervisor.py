"""A running Solo: Ray (embedded or joined), the registry actor, and a gateway in this process.

`solo up` runs this in a background process; tests run it in a thread. It is the composition
root that wires config, Ray, the registry handle, the authenticator and the gateway together.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import threading
import time
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from solo.config import SoloConfig, loop_factory
from solo.config_reload import RELOADED_FILE, ConfigSource
from solo.errors import FailedPrecondition, SoloError
from solo.events.crypto import open_key as open_event_key
from solo.gateway.config_rpc import LiveConfig
from solo.gateway.group import GROUP_FILE, GroupFile, Member
from solo.gateway.port_lock import claim_port, lock_port, probe_free
from solo.gateway.server import Gateway, settle_collector, start_gateway
from solo.registry.actor import REGISTRY_NAME
from solo.registry.handle import RegistryHandle, find_registry, get_or_create_registry
from solo.registry.rebuild import CHECKPOINT_FILE
from solo.runtime import sandbox
from solo.runtime.event_log_actor import EventLogHandle, find_event_log, get_or_create_event_log
from solo.runtime.gateways import GatewayChildren
from solo.runtime.launcher import Launcher
from solo.security import control
from solo.security.keys import KeyRing
from solo.security.tokens import authenticator, ensure_operator_token

log = logging.getLogger("solo")
STATE_FILE = "solo.json"
OPERATOR_TOKEN_FILE = "operator.token"
LOCK_FILE = "solo.lock"


def lock_data_dir(data_dir: Path) -> int:
    """Take `<data-dir>/solo.lock` (flock, exclusive) for the life of this process and write our pid in
    it; FailedPrecondition naming the holder's pid when another Solo has it. Two Solos on one data
    directory would each start a registry and an event log writing the same files."""
    path = Path(data_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise FailedPrecondition(f"another Solo (pid {holder}) already runs on the data directory {data_dir} (it "
                                 f"holds {path}); stop it with `solo down --data-dir {data_dir}`, or use another "
                                 "--data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_data_dir(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # releases the flock


def start_ray(config: SoloConfig, address: str | None, num_cpus: int | None = None,
              resources: dict[str, float] | None = None) -> bool:
    """Connect to `address` or start an embedded local Ray. Returns True when Solo started Ray."""
    if ray.is_initialized():
        return False
    common = {"namespace": config.namespace, "include_dashboard": False, "log_to_driver": False}
    if address:
        ray.init(address=address, **common)
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # address="local": always a new Ray of our own, never one that RAY_ADDRESS or another session points at
    ray.init(address="local", num_cpus=num_cpus, resources=resources, _node_ip_address="127.0.0.1", **common)
    return True


def host_bind_address() -> str:
    """Loopback when every node of the cluster is on this machine's loopback, else each node's IP."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if alive and all(n.get("NodeManagerAddress") in ("127.0.0.1", "localhost") for n in alive):
        return "127.0.0.1"
    return ""


def check_sandbox(config: SoloConfig) -> sandbox.CellPolicy:
    """The cell policy in force; FailedPrecondition when it cannot run on this machine (before Ray starts), so
    untrusted code never runs unsandboxed unless the operator said `[runtime] sandbox = "off"`."""
    policy = sandbox.policy_from(config.runtime)
    why = sandbox.refusal(policy)
    if why:
        raise FailedPrecondition(why)
    if policy.mechanism == "bwrap":
        try:
            sandbox.check_data_dir(config.data_dir)
        except sandbox.SandboxUnavailable as exc:
            raise FailedPrecondition(str(exc)) from None
    return policy


class Supervisor:
    def __init__(self, config: SoloConfig, ray_address: str | None = None, num_cpus: int | None = None,
                 resources: dict[str, float] | None = None, source: ConfigSource | None = None):
        """`source`: how `config` was made (the file and flags of `solo up`), what a config reload loads again;
        None: nothing to reload."""
        self.config = config
        self.source = source
        self.live: LiveConfig | None = None  # process 0's live config: SIGHUP reloads through it
        self._reloads: set[asyncio.Task] = set()
        self.ray_address = ray_address
        self.num_cpus = num_cpus
        self.resources = resources
        self.embedded = False
        self.gateway: Gateway | None = None
        self.registry_actor = None
        self.control_secret = ""  # what the registry and event-log actors ask of every caller
        self.operator_token_path = config.data_dir / OPERATOR_TOKEN_FILE
        self.lock_fd: int | None = None  # <data-dir>/solo.lock, held until shutdown
        self.port_lock_fd: int | None = None  # with several gateway processes: the per-user lock on the port
        self.group: GroupFile | None = None
        self.children: GatewayChildren | None = None  # gateway processes 1 .. N-1

    def prepare(self) -> None:
        """Blocking part of start-up: data dir (locked), control secret, Ray, the registry actor, the operator
        token."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.config.data_dir, 0o700)
        self.lock_fd = lock_data_dir(self.config.data_dir)
        try:
            if self.config.gateway.processes > 1:  # N processes share the port (SO_REUSEPORT): nobody else may
                gw = self.config.gateway
                self.port_lock_fd = claim_port(gw.host, gw.port, self.config.data_dir)
            self._prepare()
        except BaseException:
            self._release_group()
            unlock_data_dir(self.lock_fd)
            self.lock_fd = None
            raise

    def _prepare(self) -> None:
        self.control_secret = control.load_or_create(self.config.data_dir)
        self.sandbox = check_sandbox(self.config)
        # [events] encrypt: the key made, or checked against every encrypted event file (a clear error now,
        # not an event-log actor dying in Ray); the choice is recorded for the actor in events/encryption.json
        open_event_key(self.config.data_dir / "events", self.config.events.encrypt, self.config.events.key_file)
        (self.config.data_dir / RELOADED_FILE).unlink(missing_ok=True)  # a new start: the file and flags as now
        self.embedded = start_ray(self.config, self.ray_address, self.num_cpus, self.resources)
        on_this_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.event_log_actor = get_or_create_event_log(self.config.data_dir / "events", self.config.namespace,
                                                       self.config.events, on_this_node,
                                                       checkpoint_file=self.config.data_dir / CHECKPOINT_FILE,
                                                       control_secret=self.control_secret,
                                                       reloaded_file=self.config.data_dir / RELOADED_FILE)
        self.registry_actor = get_or_create_registry(self.config, host_bind_address(), on_this_node,
                                                     control_secret=self.control_secret)
        self.keys = KeyRing(self.config.data_dir / "keys")
        ensure_operator_token(self.keys, self.operator_token_path, self.config.security.operator_token_days)

    async def serve(self) -> Gateway:
        n = self.config.gateway.processes
        member = None
        if n > 1:  # the port was claimed in prepare(); probed again: Ray's start took a while
            if self.config.gateway.port:
                probe_free(self.config.gateway.host, self.config.gateway.port)
            self.group = GroupFile.create(self.config.data_dir)
            member = Member(self.group, 0, n, secrets.token_hex(32))
        self.live = LiveConfig(self.registry_handle(), self.source, member)
        self.gateway = await start_gateway(self.config, self.registry_handle(), authenticator(self.config, self.keys),
                                           self.event_log_handle(), member, self.live)
        if n > 1:
            try:
                if self.port_lock_fd is None:  # port 0: lock the port the kernel picked
                    self.port_lock_fd = lock_port(self.gateway.port, self.config.data_dir)
                self.children = GatewayChildren(self.config, self.group, self.gateway.port,
                                                ray.get_runtime_context().gcs_address, self.control_secret,
                                                member.token, source=self.source)
                await self.children.start()
            except BaseException:
                await self.gateway.stop()
                self._release_group()
                raise
            log.info("%d gateway processes serve port %d (pids %s)", n, self.gateway.port, self.gateway_pids())
        settle_collector()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # the main thread only (`solo up`)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._sighup)
        return self.gateway

    def _sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_config({"principal": "SIGHUP"}))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload_config(self, who: dict) -> dict | None:
        """What SIGHUP does: `solo config reload`, with the outcome in the log (None when refused)."""
        try:
            result = await self.live.reload(who)
        except SoloError as exc:
            log.error("configuration reload refused, nothing changed: %s", exc.message)
            return None
        log.warning("configuration reloaded: changed %s; needs a restart (left as it was): %s",
                    ", ".join(result["changed"]) or "nothing", ", ".join(result["needs_restart"]) or "nothing")
        return result

    def gateway_pids(self) -> list[int]:
        """The pids of the gateway processes, process 0 (this one) first."""
        children = self.children.pids if self.children else {}
        return [os.getpid(), *(children[i] for i in sorted(children))]

    def _release_group(self) -> None:
        if self.port_lock_fd is not None:
            os.close(self.port_lock_fd)  # releases the flock
            self.port_lock_fd = None
        if self.group is not None:
            self.group.close()
            (self.config.data_dir / GROUP_FILE).unlink(missing_ok=True)
            self.group = None

    def registry_handle(self) -> RegistryHandle:
        return RegistryHandle(self.registry_actor, self.control_secret)

    def event_log_handle(self) -> EventLogHandle:
        return EventLogHandle(self.config.namespace, self.control_secret)

    async def deploy_example(self, path: Path) -> str:
        """Deploy the example echo service for the operator's tenant (idempotent)."""
        from solo.core.spec import ServiceSpec, validate_spec
        from solo.security.tokens import OPERATOR_TENANT

        spec = validate_spec(ServiceSpec(name=path.stem, source=path.read_text(), filename=path.name),
                             self.config.limits, self.config.runtime.default_num_cpus)
        result = await self.registry_handle().deploy(OPERATOR_TENANT, spec, False, {"principal": "solo up"})
        await self.gateway.follower.synced(result["route_version"])
        return spec.name

    def write_state(self) -> Path:
        path = self.config.data_dir / STATE_FILE
        path.write_text(json.dumps({
            "address": f"{self.config.gateway.host}:{self.gateway.port}", "pid": os.getpid(),
            "embedded": self.embedded, "ray_address": ray.get_runtime_context().gcs_address,
            "operator_token_file": str(self.operator_token_path), "started_at": time.time(),
            "tls_ca": str(self.config.tls_dir / "ca.crt") if self.config.tls.enabled else "",
            "client_cert_required": self.config.tls.require_client_cert, "sandbox": self.sandbox.describe(),
            "gateway_processes": self.config.gateway.processes, "gateway_pids": self.gateway_pids(),
            "rest_url": self.gateway.rest.url if self.gateway.rest is not None else "",
            "metrics_address": f"{self.config.gateway.metrics_host}:{self.gateway.metrics_port}"
            if self.gateway.metrics_port else "",
            **({"tls_cert": str(self.config.tls_dir / "clients" / "operator.crt"),
                "tls_key": str(self.config.tls_dir / "clients" / "operator.key")}
               if self.config.tls.require_client_cert else {}),
        }, indent=1))
        return path

    async def shutdown(self, stop_services: bool = True) -> None:
        """Stop the gateway; with `stop_services`, stop every service and the registry too."""
        try:
            if self.children is not None:  # first: they are Ray drivers, and clients move to process 0 meanwhile
                await self.children.stop()
            if self.gateway is not None:
                await self.gateway.stop()
            self._release_group()
            if stop_services:
                await asyncio.to_thread(shutdown_cluster_side, self.config, self.control_secret)
            (self.config.data_dir / STATE_FILE).unlink(missing_ok=True)
            if self.embedded:
                ray.shutdown()
        finally:
            unlock_data_dir(self.lock_fd)
            self.lock_fd = None


def shutdown_cluster_side(config: SoloConfig, control_secret: str) -> None:
    """Stop all services (stop hooks run, events flushed), then kill the registry and stray hosts."""
    actor = find_registry(config.namespace)
    if actor is not None:
        try:
            ray.get(actor.shutdown.remote(control_secret), timeout=config.runtime.stop_grace_seconds + 30)
        except Exception as exc:  # noqa: BLE001 - best effort, kill it anyway
            log.warning("registry shutdown failed: %s", exc)
        ray.kill(actor, no_restart=True)
    Launcher(config.namespace).kill_all()
    event_log = find_event_log(config.namespace)
    if event_log is not None:  # last: the registry's final events go through it
        try:
            ray.get(event_log.close.remote(control_secret), timeout=30)
        except Exception as exc:  # noqa: BLE001
            log.warning("event log close failed: %s", exc)
        ray.kill(event_log, no_restart=True)


class ThreadedSolo:
    """Solo in a background thread of this process (tests, notebooks, benchmarks)."""

    def __init__(self, config: SoloConfig, ray_address: str | None = None, num_cpus: int | None = None,
                 resources: dict[str, float] | None = None, source: ConfigSource | None = None):
        self.supervisor = Supervisor(config, ray_address, num_cpus, resources, source)
        self.loop = loop_factory(config.gateway.event_loop)()
        self.thread = threading.Thread(target=self.loop.run_forever, name="solo-gateway", daemon=True)

    def start(self) -> ThreadedSolo:
        self.supervisor.prepare()
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.supervisor.serve(), self.loop).result(60)
        return self

    @property
    def address(self) -> str:
        return self.supervisor.gateway.address

    @property
    def operator_token(self) -> str:
        return self.supervisor.operator_token_path.read_text().strip()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, stop_services: bool = True) -> None:
        self.run(self.supervisor.shutdown(stop_services), timeout=120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


__all__ = ["REGISTRY_NAME", "Supervisor", "ThreadedSolo", "start_ray"]
