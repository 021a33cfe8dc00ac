"""The only place that creates, finds and kills Ray actors for Solo.

Hosts are detached (they outlive the gateway and the CLI), named in Solo's namespace so `solo down`
can find every one, and never restarted by Ray: the registry owns the restart policy.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import time

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from solo.core.spec import Resources
from solo.errors import FailedPrecondition, ServiceFailed, SoloError, Unavailable
from solo.runtime.host import ServiceHost

HOST_PREFIX = "solo-host-"
REGISTRY_NAME = "solo-registry"  # the registry actor's name in Solo's namespace (hosts look it up for discovery)
_counter = itertools.count()


def host_options(resources: Resources) -> dict:
    options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_restarts": 0,
               "max_concurrency": 10_000, "lifetime": "detached"}
    if resources.memory_bytes:
        options["memory"] = resources.memory_bytes
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options


def _totals(nodes: list[dict], key: str) -> list[float]:
    return [float(n.get("Resources", {}).get(key, 0.0)) for n in nodes if n.get("Alive")]


def check_schedulable(resources: Resources) -> None:
    """Fail at once when no node of the cluster could ever hold the request."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    wanted = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, "memory": float(resources.memory_bytes),
              **resources.custom}
    wanted = {k: v for k, v in wanted.items() if v}
    if not wanted:
        return
    for node in nodes:
        have = node.get("Resources", {})
        if all(have.get(k, 0.0) >= v for k, v in wanted.items()):
            return
    largest = {k: max(_totals(nodes, k), default=0.0) for k in wanted}
    have_text = ", ".join(f"{k}={v:g}" for k, v in largest.items())
    raise FailedPrecondition(
        f"no node in the cluster can ever hold this service: asked for {resources.describe()}; "
        f"the largest node has {have_text} ({len(nodes)} node(s)). Ask for less, or add a node that has it")


def fits_now(resources: Resources) -> bool:
    """Whether the cluster has the request free right now (summed over nodes; a slow start is not a
    placement wait)."""
    wanted = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, "memory": float(resources.memory_bytes),
              **resources.custom}
    wanted = {k: v for k, v in wanted.items() if v}
    available = ray.available_resources()
    return all(available.get(k, 0.0) >= v for k, v in wanted.items())


def cluster_available() -> str:
    avail = ray.available_resources()
    return ", ".join(f"{k}={v:g}" for k, v in sorted(avail.items())
                     if k in ("CPU", "GPU", "memory") or not k.startswith(("node:", "object_store")))


class Launcher:
    def __init__(self, namespace: str, bind_host: str = "", sandbox: dict | None = None,
                 wait_for_autoscaler: bool = False, channel: dict | None = None):
        self.namespace = namespace
        self.channel = channel or {}  # the call channel's TLS and the key hosts seal theirs to (ServiceHost)
        self.bind_host = bind_host  # where hosts listen for gateways; "" = the node's IP
        self.sandbox = sandbox or {}  # the CellPolicy every host starts its cell with

    def create(self, resources: Resources):
        name = f"{HOST_PREFIX}{os.getpid()}-{int(time.time() * 1000)}-{next(_counter)}"
        actor_cls = ray.remote(ServiceHost)
        return actor_cls.options(name=name, namespace=self.namespace, **host_options(resources)).remote(self.bind_host, self.sandbox, self.channel)

    async def start(self, resources: Resources, timeout: float, startup_grace: float = 60.0):
        """A new, empty host with the requested resources, its server up.

        Waits at most `timeout` for resources: if by then the cluster still lacks what was asked
        for, the host is cancelled and the error names the request and what is available. If the
        resources are there and the process is merely slow to start (many starting at once),
        it gets up to `startup_grace` more seconds.
        """
        check_schedulable(resources)
        handle = self.create(resources)
        ready = asyncio.ensure_future(_await(handle.ready.remote()))
        try:
            done, _ = await asyncio.wait({ready}, timeout=timeout)
            if not done and fits_now(resources):
                done, _ = await asyncio.wait({ready}, timeout=startup_grace)
            if not done:
                ready.cancel()
                self.kill(handle)
                raise FailedPrecondition(
                    f"Ray could not place the service within {timeout:g}s: asked for {resources.describe()}; "
                    f"available now: {cluster_available()}. Stop other services or ask for less")
            return handle, ready.result()
        except RayActorError as exc:
            raise Unavailable(f"the host process died while starting: {exc}") from None

    @staticmethod
    def kill(handle) -> None:
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead is fine
            pass

    def host_names(self) -> list[str]:
        return [e["name"] for e in ray.util.list_named_actors(all_namespaces=True)
                if e["namespace"] == self.namespace and e["name"].startswith(HOST_PREFIX)]

    def find(self, name: str):
        try:
            return ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            return None

    def kill_named(self, name: str) -> None:
        handle = self.find(name)
        if handle is not None:
            self.kill(handle)

    def kill_all(self) -> int:
        """Kill every host in the namespace (used by `solo down`)."""
        names = self.host_names()
        for name in names:
            self.kill_named(name)
        return len(names)


async def _await(ref):
    return await ref


def died_message(exc: BaseException) -> str:
    text = str(exc)
    if "exit" in text.lower() or "died" in text.lower():
        return "the service process exited (os._exit, a signal, or a crash in native code)"
    return f"the service process is gone: {text.splitlines()[0] if text else type(exc).__name__}"


async def call_host(ref, timeout: float, what: str):
    """Await a control call on a host, turning Ray's errors into Solo's."""
    try:
        return await asyncio.wait_for(_await(ref), timeout)
    except TimeoutError:
        raise ServiceFailed(f"{what} did not finish within {timeout:g}s") from None
    except RayTaskError as exc:
        if isinstance(exc.cause, SoloError):
            raise exc.cause from None
        raise ServiceFailed(f"{what} failed: {exc.cause!r}") from None
    except RayActorError as exc:
        raise ServiceFailed(f"{what} failed: {died_message(exc)}", exception_type="ProcessExited") from None
    except GetTimeoutError:
        raise ServiceFailed(f"{what} timed out") from None
