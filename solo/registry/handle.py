"""How the gateway (and `solo up`/`solo down`) reach the registry actor. The only Ray here."""
from __future__ import annotations

import asyncio

import ray
from ray.exceptions import RayActorError, RayTaskError

from solo.config import SoloConfig
from solo.core.spec import ServiceSpec
from solo.errors import SoloError, Unavailable
from solo.registry.actor import REGISTRY_NAME, RegistryActor


def get_or_create_registry(config: SoloConfig, bind_host: str = "", scheduling_strategy=None):
    """The detached, named registry actor in Solo's namespace (created on first start)."""
    actor_cls = ray.remote(RegistryActor)
    handle = actor_cls.options(
        name=REGISTRY_NAME, namespace=config.namespace, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=10_000, max_restarts=-1, max_task_retries=0,
        scheduling_strategy=scheduling_strategy,
    ).remote(config.model_dump(mode="json"), bind_host)
    ray.get(handle.start.remote())
    return handle


def find_registry(namespace: str):
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=namespace)
    except ValueError:
        return None


class RegistryHandle:
    """Async facade over the actor: Ray errors become Solo errors, domain errors pass through."""

    def __init__(self, actor):
        self.actor = actor

    async def _call(self, ref):
        try:
            return await ref
        except RayTaskError as exc:
            if isinstance(exc.cause, SoloError):
                raise exc.cause from None
            raise Unavailable(f"the registry failed: {exc.cause!r}") from None
        except RayActorError:
            raise Unavailable("the registry is unavailable (restarting or stopped); retry shortly") from None

    async def deploy(self, tenant: str, spec: ServiceSpec, replace: bool, who: dict) -> dict:
        return await self._call(self.actor.deploy.remote(tenant, spec, replace, who))

    async def get(self, tenant: str, name: str) -> dict:
        return await self._call(self.actor.get.remote(tenant, name))

    async def list(self, tenant: str) -> list[dict]:
        return await self._call(self.actor.list.remote(tenant))

    async def stop(self, tenant: str, name: str, remove: bool, who: dict) -> dict:
        return await self._call(self.actor.stop.remote(tenant, name, remove, who))

    async def swap(self, tenant: str, name: str, source: str, filename: str, class_name: str, version: str,
                   watch_seconds: float | None, who: dict) -> dict:
        return await self._call(self.actor.swap.remote(tenant, name, source, filename, class_name, version,
                                                       watch_seconds, who))

    async def rollback(self, tenant: str, name: str, to_version: str, who: dict) -> dict:
        return await self._call(self.actor.rollback.remote(tenant, name, to_version, who))

    async def register(self, tenant: str, name: str, instance: str, version: str, address: str, labels: dict,
                       ttl: float, who: dict) -> dict:
        return await self._call(self.actor.register.remote(tenant, name, instance, version, address, labels, ttl,
                                                           who))

    async def deregister(self, tenant: str, name: str, instance: str, who: dict) -> None:
        return await self._call(self.actor.deregister.remote(tenant, name, instance, who))

    async def discover(self, tenant: str, owner: str, name: str, labels: dict) -> list[dict]:
        return await self._call(self.actor.discover.remote(tenant, owner, name, labels))

    async def grant(self, tenant: str, name: str, to_tenant: str, who: dict) -> dict:
        return await self._call(self.actor.grant.remote(tenant, name, to_tenant, who))

    async def revoke_grant(self, tenant: str, name: str, to_tenant: str, who: dict) -> dict:
        return await self._call(self.actor.revoke_grant.remote(tenant, name, to_tenant, who))

    async def grants(self, tenant: str) -> dict:
        return await self._call(self.actor.grants.remote(tenant))

    async def wait_routes(self, known_version: int, timeout: float) -> tuple[int, list[dict]]:
        return await self._call(self.actor.wait_routes.remote(known_version, timeout))

    async def ping(self, timeout: float = 5.0) -> bool:
        return await asyncio.wait_for(self._call(self.actor.ping.remote()), timeout)
