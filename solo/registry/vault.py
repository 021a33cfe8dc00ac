"""The vault in the registry: secrets put, read, listed, removed, injected at start, each access an event.

The registry is the vault's single writer (security/vault.py holds the encryption and the files): a tenant's
operations run one at a time, beside other tenants' (a rotation alone), their file work in the vault's own
threads. Events name the key, the version and who
asked, never a value. A read is refused when its event cannot be written (no unaudited reads); a
change already on disk queues its event like the registry's other events (written at the next commit).

At every start of a service deployed with secrets (first start, restart, swap, rollback, a move off a
lost node: all go through `_load_host`), the newest version of each key is read and sealed to the host
that will run it (security/seal.py, HPKE to the key pair the host made and published in `ready()`),
so the values cross Ray only encrypted to that one host process.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from solo.errors import FailedPrecondition, NotFound, SoloError, Unavailable
from solo.registry.state import Event, ServiceRecord, acting_for
from solo.security import seal
from solo.security.vault import SEAL_PURPOSE, Vault, VaultLimits

log = logging.getLogger("solo.registry")
VAULT_THREADS = 2  # the vault's file work (reads, encrypted writes with fsync) for all tenants
MAX_INJECTED_BYTES = 256 * 1024  # the values one service is handed, in all (they travel in the cell's load header)


class VaultGate:
    """Operations of different tenants run side by side, one at a time per tenant; opening the vault and a
    rotation run alone (they touch every tenant's file and the master keys)."""

    def __init__(self):
        self.tenants: dict[str, asyncio.Lock] = {}
        self.running = 0
        self.alone_now = False
        self.changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def tenant(self, tenant: str):
        async with self.changed:
            await self.changed.wait_for(lambda: not self.alone_now)
            self.running += 1
        try:
            async with self.tenants.setdefault(tenant, asyncio.Lock()):
                yield
        finally:
            async with self.changed:
                self.running -= 1
                self.changed.notify_all()

    @contextlib.asynccontextmanager
    async def alone(self):
        async with self.changed:
            await self.changed.wait_for(lambda: not self.alone_now)
            self.alone_now = True  # no new operation starts; the running ones finish
            await self.changed.wait_for(lambda: self.running == 0)
        try:
            yield
        finally:
            async with self.changed:
                self.alone_now = False
                self.changed.notify_all()


class VaultMixin:
    """Mixed into RegistryActor (registry/actor.py)."""

    _vault: Vault | None = None
    _vault_gate: VaultGate | None = None
    _vault_pool: ThreadPoolExecutor | None = None  # its own threads: vault I/O never holds up the registry's

    async def _in_vault_thread(self, fn, *args):
        if self._vault_pool is None:
            self._vault_pool = ThreadPoolExecutor(VAULT_THREADS, thread_name_prefix="solo-vault")
        return await asyncio.get_running_loop().run_in_executor(self._vault_pool, fn, *args)

    async def _vault_open(self, after_rebuild: bool = True) -> None:
        """The first call opens the vault (finishing a rotation a crash interrupted), alone. The RPCs wait for the
        registry's rebuild like every RPC (their events go after what it reads); starts of services do not (the
        rebuild itself starts them)."""
        if after_rebuild:
            await self.start()
        if self._vault_gate is None:
            self._vault_gate = VaultGate()
        if self._vault is None:
            async with self._vault_gate.alone():
                if self._vault is None:
                    c = self.config.vault
                    limits = VaultLimits(c.max_secret_bytes, c.max_secrets_per_tenant, c.max_versions_per_key,
                                         c.max_tenant_bytes, c.write_bytes_per_second)
                    self._vault = await self._in_vault_thread(Vault, self.config.data_dir / "vault", limits,
                                                              c.master_key_file)

    async def _vault_call(self, tenant: str, fn, after_rebuild: bool = True):
        """fn(vault) in a vault thread, one at a time for `tenant`."""
        await self._vault_open(after_rebuild)
        async with self._vault_gate.tenant(tenant):
            return await self._in_vault_thread(fn, self._vault)

    def _vault_event(self, tenant: str, type_: str, subject: str, who: dict | None, **payload) -> Event:
        return Event(type_, tenant, subject, payload, who=who or {})

    async def _audit_change(self, event: Event) -> None:
        self.state.outbox.append(event)
        await self._commit(event.who)

    async def _audit_read(self, event: Event) -> None:
        """Written before the value is answered: a read that cannot be recorded is refused."""
        rows = [{"tenant": event.tenant, "type": event.type, "subject": event.subject, "payload": event.payload,
                 "principal": event.who.get("principal", "solo"), "correlation_id": event.who.get("request_id", "")}]
        try:
            await self.sink.append(rows)
        except SoloError as exc:
            raise Unavailable(f"the read could not be recorded in the event log ({exc.message}); every read of a "
                              "secret is audited: retry when the event log is back") from None

    # -- RPCs --------------------------------------------------------------------------------------
    async def secret_put(self, tenant: str, key: str, value: bytes, who: dict | None = None) -> dict:
        put = await self._vault_call(tenant, lambda v: v.put(tenant, key, value))
        await self._audit_change(self._vault_event(tenant, "secret.put", key, who, version=put.version))
        return {"key": put.key, "version": put.version}

    async def secret_get(self, tenant: str, key: str, version: int = 0, who: dict | None = None) -> dict:
        got = await self._vault_call(tenant, lambda v: v.get(tenant, key, version))
        await self._audit_read(self._vault_event(tenant, "secret.read", key, who, version=got.version))
        return {"key": got.key, "version": got.version, "value": got.value, "created_at": got.created_at}

    async def secret_list(self, tenant: str, prefix: str = "") -> list[dict]:
        found = await self._vault_call(tenant, lambda v: v.list(tenant, prefix))
        return [{"key": s.key, "version": s.version, "versions": s.versions, "created_at": s.created_at,
                 "updated_at": s.updated_at} for s in found]

    async def secret_delete(self, tenant: str, key: str, who: dict | None = None) -> dict:
        versions = await self._vault_call(tenant, lambda v: v.delete(tenant, key))
        await self._audit_change(self._vault_event(tenant, "secret.deleted", key, who, versions=versions))
        return {"versions": versions}

    async def secret_check(self, tenant: str, keys: list[str]) -> None:
        """Each key exists for the tenant (a deploy naming a key that is not there is refused)."""
        def check(vault: Vault) -> None:
            for key in keys:
                try:
                    vault.versions(tenant, key)
                except NotFound:
                    raise NotFound(f"secret {key!r} not found; put it first (`solo secrets put {key}`), then "
                                   "deploy") from None
        await self._vault_call(tenant, check)

    async def secret_keys(self, tenant: str, name: str) -> list[str]:
        """The secrets a service of the tenant is deployed with ([] when there is no such service)."""
        await self.start()
        record = self.state.services.get((tenant, name))
        return list(record.spec.secrets) if record is not None else []

    async def vault_rotate(self, tenant: str, who: dict | None = None) -> dict:
        def rotate(vault: Vault) -> tuple[str, int, int, list[str]]:
            kid, count = vault.rotate()
            return kid, count, len(vault.unreadable), list(vault.skipped)
        await self._vault_open()
        async with self._vault_gate.alone():
            kid, rewrapped, unreadable, skipped = await self._in_vault_thread(rotate, self._vault)
        if unreadable:
            log.warning("the master-key rotation left %d secret versions that did not decrypt as they were", unreadable)
        if skipped:
            log.warning("the master-key rotation could not read the vault files of tenants %s; the old key is kept "
                        "until they are restored", ", ".join(skipped))
        await self._audit_change(self._vault_event(tenant, "vault.key_rotated", "vault", who, key_id=kid,
                                                   rewrapped=rewrapped, unreadable=unreadable))
        return {"key_id": kid, "rewrapped": rewrapped}

    # -- injection -----------------------------------------------------------------------------------
    async def _sealed_secrets(self, record: ServiceRecord, ready: dict) -> str:
        """The newest value of each of the service's secrets, sealed to the host that is about to load it
        ("" when it has none); queues the secret.injected event (keys and versions only)."""
        keys = list(record.spec.secrets)
        if not keys:
            return ""
        seal_to = ready.get("seal_key")
        if not isinstance(seal_to, str) or not seal_to:
            raise Unavailable("the host did not publish a key to seal the service's secrets to; start the "
                              "service again")

        def read(vault: Vault) -> dict:
            found = {}
            for key in keys:
                try:
                    found[key] = vault.get(record.tenant, key)
                except NotFound:
                    raise FailedPrecondition(f"secret {key!r} of service {record.name!r} is no longer in the vault; "
                                             f"put it again (`solo secrets put {key}`), then deploy or restart "
                                             "the service") from None
            return found
        found = await self._vault_call(record.tenant, read, after_rebuild=False)
        total = sum(len(v.value) for v in found.values())
        if total > MAX_INJECTED_BYTES:
            raise FailedPrecondition(f"the secrets of service {record.name!r} hold {total} bytes in all, over the "
                                     f"{MAX_INJECTED_BYTES} a service can be handed; give it fewer or smaller secrets")
        payload = json.dumps({k: base64.b64encode(v.value).decode() for k, v in found.items()})
        try:
            sealed = seal.seal(seal_to, payload, SEAL_PURPOSE)
        except seal.SealError as exc:
            raise Unavailable(f"the service's secrets could not be sealed to its host ({exc}); start it again") \
                from None
        self.state.outbox.append(Event("secret.injected", record.tenant, record.name,
                                       {"version": record.version, "secrets": {k: v.version for k, v in found.items()}},
                                       who=acting_for.get()))
        return sealed


__all__ = ["VaultMixin"]
