"""How the gateway (and `solo up`/`solo down`) reach the registry actor. The only Ray here."""
from __future__ import annotations

import asyncio

import ray
from ray.exceptions import RayActorError, RayTaskError

from solo.config import SoloConfig
from solo.core.spec import ServiceSpec
from solo.errors import SoloError, Unavailable
from solo.registry.actor import REGISTRY_NAME, RegistryActor
from solo.security.control import gated

# Hosts call `resolve` and `append_logs` (their per-host ticket proves who they are); `ping` tells nothing.
# Every other method takes Solo's control secret first (solo/security/control.py).
OPEN_METHODS = frozenset({"resolve", "append_logs", "ping"})


def get_or_create_registry(config: SoloConfig, bind_host: str = "", scheduling_strategy=None, *,
                           control_secret: str):
    """The detached, named registry actor in Solo's namespace (created on first start)."""
    actor_cls = ray.remote(gated(RegistryActor, "registry", OPEN_METHODS))
    handle = actor_cls.options(
        name=REGISTRY_NAME, namespace=config.namespace, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=10_000, max_restarts=-1, max_task_retries=0,
        scheduling_strategy=scheduling_strategy,
    ).remote(control_secret, config.model_dump(mode="json"), bind_host)
    ray.get(handle.start.remote(control_secret))
    return handle


def find_registry(namespace: str):
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=namespace)
    except ValueError:
        return None


class RegistryHandle:
    """Async facade over the actor: presents the control secret on every call; Ray errors become
    Solo errors, domain errors pass through."""

    def __init__(self, actor, control_secret: str):
        self.actor = actor
        self.control_secret = control_secret

    async def _call(self, method: str, *args):
        extra = () if method in OPEN_METHODS else (self.control_secret,)
        try:
            return await getattr(self.actor, method).remote(*extra, *args)
        except RayTaskError as exc:
            if isinstance(exc.cause, SoloError):
                raise exc.cause from None
            raise Unavailable(f"the registry failed: {exc.cause!r}") from None
        except RayActorError:
            raise Unavailable("the registry is unavailable (restarting or stopped); retry shortly") from None

    async def deploy(self, tenant: str, spec: ServiceSpec, replace: bool, who: dict) -> dict:
        return await self._call("deploy", tenant, spec, replace, who)

    async def get(self, tenant: str, name: str) -> dict:
        return await self._call("get", tenant, name)

    async def list(self, tenant: str) -> list[dict]:
        return await self._call("list", tenant)

    async def stop(self, tenant: str, name: str, remove: bool, who: dict) -> dict:
        return await self._call("stop", tenant, name, remove, who)

    async def swap(self, tenant: str, name: str, source: str, filename: str, class_name: str, version: str,
                   watch_seconds: float | None, who: dict, may_read: list[str] | None = None) -> dict:
        return await self._call("swap", tenant, name, source, filename, class_name, version, watch_seconds, who,
                                may_read)

    async def rollback(self, tenant: str, name: str, to_version: str, who: dict,
                       may_read: list[str] | None = None) -> dict:
        return await self._call("rollback", tenant, name, to_version, who, may_read)

    async def rollback_secret_keys(self, tenant: str, name: str, to_version: str) -> list[str]:
        return await self._call("rollback_secret_keys", tenant, name, to_version)

    async def register(self, tenant: str, name: str, instance: str, version: str, address: str, labels: dict,
                       ttl: float, who: dict) -> dict:
        return await self._call("register", tenant, name, instance, version, address, labels, ttl, who)

    async def deregister(self, tenant: str, name: str, instance: str, who: dict) -> None:
        return await self._call("deregister", tenant, name, instance, who)

    async def discover(self, tenant: str, owner: str, name: str, labels: dict) -> list[dict]:
        return await self._call("discover", tenant, owner, name, labels)

    async def grant(self, tenant: str, name: str, to_tenant: str, who: dict) -> dict:
        return await self._call("grant", tenant, name, to_tenant, who)

    async def revoke_grant(self, tenant: str, name: str, to_tenant: str, who: dict) -> dict:
        return await self._call("revoke_grant", tenant, name, to_tenant, who)

    async def grants(self, tenant: str) -> dict:
        return await self._call("grants", tenant)

    # the vault (registry/vault.py): values cross Ray only on the head node, between the gateway and the registry
    async def secret_put(self, tenant: str, key: str, value: bytes, who: dict) -> dict:
        return await self._call("secret_put", tenant, key, value, who)

    async def secret_get(self, tenant: str, key: str, version: int, who: dict) -> dict:
        return await self._call("secret_get", tenant, key, version, who)

    async def secret_list(self, tenant: str, prefix: str) -> list[dict]:
        return await self._call("secret_list", tenant, prefix)

    async def secret_delete(self, tenant: str, key: str, who: dict) -> dict:
        return await self._call("secret_delete", tenant, key, who)

    async def secret_check(self, tenant: str, keys: list[str]) -> None:
        return await self._call("secret_check", tenant, keys)

    async def secret_keys(self, tenant: str, name: str) -> list[str]:
        return await self._call("secret_keys", tenant, name)

    async def vault_rotate(self, tenant: str, who: dict) -> dict:
        return await self._call("vault_rotate", tenant, who)

    async def read_logs(self, tenant: str, name: str, after: int, since_seconds: float, tail: int,
                        wait_seconds: float) -> dict:
        return await self._call("read_logs", tenant, name, after, since_seconds, tail, wait_seconds)

    async def wait_routes(self, known_version: int, timeout: float) -> tuple[int, list[dict]]:
        return await self._call("wait_routes", known_version, timeout)

    async def usage(self) -> list[dict]:
        """RSS and CPU seconds of every running service (registry/usage.py)."""
        return await self._call("usage")

    async def reload_config(self, loaded: dict, path: str, who: dict) -> dict:
        return await self._call("reload_config", loaded, path, who)

    async def wait_config(self, known_version: int, timeout: float) -> tuple[int, dict]:
        return await self._call("wait_config", known_version, timeout)

    async def config_in_force(self) -> dict:
        return await self._call("config_in_force")

    async def ping(self, timeout: float = 5.0) -> bool:
        return await asyncio.wait_for(self._call("ping"), timeout)
