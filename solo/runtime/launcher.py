"""The only place that creates, finds and kills Ray actors for Solo.

Hosts are detached (they outlive the gateway and the CLI), named in Solo's namespace so `solo down`
can find every one, and never restarted by Ray: the registry owns the restart policy.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from solo.core.placement import AutoscalerAsks, NodeType, Verdict, decide, holds, timeout_message, wanted
from solo.core.spec import Resources
from solo.errors import FailedPrecondition, ServiceFailed, SoloError, Unavailable
from solo.runtime.host import ServiceHost

HOST_PREFIX = "solo-host-"
REGISTRY_NAME = "solo-registry"  # the registry actor's name in Solo's namespace (hosts look it up for discovery)
_counter = itertools.count()
log = logging.getLogger("solo.launcher")


def host_options(resources: Resources) -> dict:
    options = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_restarts": 0,
               "max_concurrency": 10_000, "lifetime": "detached"}
    if resources.memory_bytes:
        options["memory"] = resources.memory_bytes
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options


def node_totals() -> list[dict]:
    """The total resources of each live node."""
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def autoscaler_node_types() -> list[NodeType] | None:
    """The node types the autoscaler can add, as it reported them to the GCS (Ray's ClusterConfig), or
    None when nothing reported one (no autoscaler, or one that does not report its config)."""
    try:
        from ray._private.state import state
        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - a private API: any failure means "not known"
        log.debug("no autoscaler cluster config", exc_info=True)
        return None
    if config is None or not config.node_group_configs:
        return None
    cap = dict(config.max_resources)  # a cluster-wide maximum bounds what any one node of it can hold
    return [NodeType(group.name, {k: float(min(v, cap.get(k, v))) for k, v in group.resources.items()},
                     group.max_count) for group in config.node_group_configs]


def check_schedulable(resources: Resources, wait_for_autoscaler: bool = False) -> Verdict:
    """Fail at once when no node of the cluster could ever hold the request (with the autoscaler
    awaited: nor any node type it can add). Otherwise say whether to place or to wait for a node."""
    verdict = decide(resources, node_totals(), autoscaler_node_types() if wait_for_autoscaler else None,
                     wait_for_autoscaler)
    if verdict.action == "refuse":
        raise FailedPrecondition(verdict.message)
    return verdict


def fits_now(resources: Resources) -> bool:
    """Whether the cluster has the request free right now (summed over nodes; a slow start is not a
    placement wait)."""
    return holds(ray.available_resources(), wanted(resources))


def ask_autoscaler(bundles: list[dict]) -> None:
    """Replace Solo's standing request to the autoscaler (best effort: without one it is a no-op)."""
    try:
        from ray.autoscaler.sdk import request_resources
        request_resources(bundles=bundles)
    except Exception:  # noqa: BLE001 - only a hint; the pending actor is Ray's demand either way
        log.warning("could not ask the autoscaler for %s", bundles, exc_info=True)


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
        self.wait_for_autoscaler = wait_for_autoscaler  # [runtime] wait_for_autoscaler
        self.asks = AutoscalerAsks()  # what hosts waiting for a new node asked the autoscaler for

    def create(self, resources: Resources):
        name = f"{HOST_PREFIX}{os.getpid()}-{int(time.time() * 1000)}-{next(_counter)}"
        actor_cls = ray.remote(ServiceHost)
        return actor_cls.options(name=name, namespace=self.namespace, **host_options(resources)).remote(self.bind_host, self.sandbox, self.channel)

    async def start(self, resources: Resources, timeout: float, startup_grace: float = 60.0):
        """A new, empty host with the requested resources, its server up.

        Waits at most `timeout` for resources: if by then the cluster still lacks what was asked
        for, the host is cancelled and the error names the request and what is available. If the
        resources are there and the process is merely slow to start (many starting at once),
        it gets up to `startup_grace` more seconds. A request no node can hold is refused at once,
        unless wait_for_autoscaler: then it is asked of the autoscaler and waits like any other.
        A host that is not returned (timeout, error, cancelled) is killed: no pending actor stays.
        """
        verdict = check_schedulable(resources, self.wait_for_autoscaler)
        ask = None
        if verdict.action == "wait":
            ask, bundles = self.asks.add(wanted(resources))
            ask_autoscaler(bundles)
        handle = self.create(resources)
        ready = asyncio.ensure_future(_await(handle.ready.remote()))
        placed = False
        try:
            done, _ = await asyncio.wait({ready}, timeout=timeout)
            if not done and fits_now(resources):
                done, _ = await asyncio.wait({ready}, timeout=startup_grace)
            if not done:
                raise FailedPrecondition(timeout_message(resources, timeout, node_totals(), cluster_available(),
                                                         self.wait_for_autoscaler))
            result = handle, ready.result()
            placed = True
            return result
        except RayActorError as exc:
            raise Unavailable(f"the host process died while starting: {exc}") from None
        finally:
            if not placed:
                ready.cancel()
                self.kill(handle)
            if ask is not None:
                bundles = self.asks.remove(ask)
                if bundles is not None:
                    ask_autoscaler(bundles)  # placed or given up: the node is no longer asked for

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
