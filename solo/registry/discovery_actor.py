"""Discovery, the registry actor's part (mixed into RegistryActor): registrations and their expiry,
`discover`, grants between tenants, and `resolve` for `solo.discover` inside services.

The rules themselves are pure, in discovery.py; this holds what needs the actor's state, its
event log and its data directory.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import secrets
import time

from solo.errors import InvalidRequest, NotFound, PermissionDenied, SoloError, Unavailable
from solo.files import write_atomic
from solo.registry.discovery import matches
from solo.registry.events import event_rows
from solo.registry.state import Event
from solo.runtime.host_server import PEER_TICKET_SECONDS, peer_ticket
from solo.security import seal

log = logging.getLogger("solo.registry")


class DiscoveryMixin:
    async def register(self, tenant: str, name: str, instance: str, version: str, address: str, labels: dict,
                       ttl: float, who: dict | None = None) -> dict:
        await self.start()
        registration, new = self.discovery.register(tenant, name, instance, version, address, labels, ttl,
                                                    time.time())
        if new:
            await self._write_own([Event("discovery.registered", tenant, name, {
                "instance_id": registration.instance, "version": version, "address": address, "labels": labels,
                "ttl": ttl})], who)
        return {"instance_id": registration.instance, "expires_at": registration.expires_at}

    async def deregister(self, tenant: str, name: str, instance: str, who: dict | None = None) -> None:
        await self.start()
        self.discovery.deregister(tenant, name, instance)
        await self._write_own([Event("discovery.deregistered", tenant, name, {"instance_id": instance})], who)

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            gone = self.discovery.expire(time.time())
            if gone:
                await self._write_own([Event("discovery.expired", r.tenant, r.name, {
                    "instance_id": r.instance, "address": r.address, "ttl": r.ttl}) for r in gone], None)

    async def _write_own(self, events: list[Event], who: dict | None, strict: bool = False) -> None:
        """Write these events, and only these: other operations' events waiting in the shared outbox
        keep their own principal. Not strict: if the log cannot take them now, the next commit retries."""
        rows, _ = event_rows(events, who or {}, self._last_crash)
        try:
            await self.sink.append(rows)
        except SoloError as exc:
            if strict:
                raise
            # queued for the next commit, stamped so that commit's principal does not become theirs
            self.state.outbox.extend(dataclasses.replace(e, who=e.who if e.who is not None else who or {})
                                     for e in events)
            log.warning("discovery events not written yet, will retry: %s", exc.message)
        self._publish()

    async def discover(self, tenant: str, owner: str, name: str, labels: dict) -> list[dict]:
        """What `tenant` may see: its own services and registrations, and services exported to it. A
        service it may not see is answered exactly like one that does not exist."""
        await self.start()
        owner = owner or tenant
        # (owner, name) pairs to look at, each visible to the caller; another tenant's services only when
        # asked for by owner, so a grant cannot push them into the grantee's own results
        if name:
            pairs = [(owner, name)] if self.discovery.visible(tenant, owner, name) else []
        elif owner == tenant:
            pairs = [(tenant, "")]
        else:
            pairs = [(o, n) for o, n in self.discovery.exported_to(tenant) if o == owner]
        found = []
        now = time.time()
        for who, wanted in pairs:
            for record in self.state.list(who):
                if (not wanted or record.name == wanted) and matches(record.spec.labels, labels):
                    found.append({"owner": who, "name": record.name, "kind": "service", "version": record.version,
                                  "state": record.state, "labels": dict(record.spec.labels), "address": "",
                                  "instance_id": "", "expires_at": 0.0})
            if who != tenant:
                continue  # registrations are not exported: they are the owner's own bookkeeping
            for r in self.discovery.registered(who, wanted):
                if r.expires_at > now and matches(r.labels, labels):
                    found.append({"owner": who, "name": r.name, "kind": "registered", "version": r.version,
                                  "state": "REGISTERED", "labels": dict(r.labels), "address": r.address,
                                  "instance_id": r.instance, "expires_at": r.expires_at})
        return found

    async def grant(self, tenant: str, name: str, to_tenant: str, who: dict | None = None) -> dict:
        await self.start()
        async with self._lock((tenant, name)):
            self.state.get(tenant, name)  # NotFound for services the tenant does not have
            if self.discovery.grant(tenant, name, to_tenant):
                try:
                    await self._write_own([Event("discovery.granted", tenant, name,
                                                 {"service": name, "to_tenant": to_tenant})], who, strict=True)
                except SoloError:  # not recorded: not granted
                    self.discovery.revoke(tenant, name, to_tenant)
                    raise
                self.state.route_version += 1  # gateways learn the grant with the routes
                self._publish()
            return {"route_version": self.state.route_version}

    async def revoke_grant(self, tenant: str, name: str, to_tenant: str, who: dict | None = None) -> dict:
        await self.start()
        async with self._lock((tenant, name)):
            if not self.discovery.revoke(tenant, name, to_tenant):
                raise NotFound(f"{name!r} is not granted to {to_tenant!r}")
            try:
                await self._write_own([Event("discovery.grant_revoked", tenant, name,
                                             {"service": name, "to_tenant": to_tenant})], who, strict=True)
            except SoloError:  # not recorded: the grant stays (it would come back after a restart)
                self.discovery.grant(tenant, name, to_tenant)
                raise
            self.state.route_version += 1
            self._publish()
            return {"route_version": self.state.route_version}

    async def grants(self, tenant: str) -> dict:
        await self.start()
        return {"given": [{"service": n, "to_tenant": g} for n, g in self.discovery.grants_of(tenant)],
                "received": [{"owner": o, "service": n} for o, n in self.discovery.exported_to(tenant)]}

    def _ticket(self, tenant: str, name: str, host: str) -> str:
        """What proves to `resolve` that a host was loaded with this tenant's service (an HMAC under a key
        in the data directory, so it holds across registry restarts)."""
        if self._secret is None:
            path = self.config.data_dir / "registry.secret"
            if not path.exists():
                write_atomic(path, secrets.token_hex(32))
            self._secret = bytes.fromhex(path.read_text().strip())
        return hmac.new(self._secret, f"{tenant}\0{name}\0{host}".encode(), hashlib.sha256).hexdigest()

    async def resolve(self, tenant: str, name: str, host: str, ticket: str, owner: str, target: str,
                      seal_to: str = "") -> dict:
        """For `solo.discover` inside a service: where `owner`'s `target` answers, if the calling service
        (proved by its host's ticket) may call it. Refusals look like a missing service. The peer ticket
        comes back sealed to `seal_to` (a public key the host made for this request: security/seal.py), so
        it crosses Ray between nodes only encrypted."""
        await self.start()
        if not hmac.compare_digest(ticket, self._ticket(tenant, name, host)):
            raise PermissionDenied("this host was not loaded with the service it claims to run")
        if not seal_to:
            raise InvalidRequest("resolve needs a public key to seal the ticket to (seal_to)")
        owner = owner or tenant
        record = self.state.services.get((owner, target)) if self.discovery.visible(tenant, owner, target) else None
        if record is None:
            shown = target if owner == tenant else f"{owner}/{target}"
            raise NotFound(f"service {shown!r} not found; check the name (and, for another tenant's service, that "
                           "its owner granted it to you: solo grant)")
        if record.state != "RUNNING" or record.placement is None:
            raise Unavailable(f"service {target!r} is {record.state}; retry in a moment")
        expires = time.time() + PEER_TICKET_SECONDS  # the host key itself never leaves the registry and gateways
        try:
            sealed = seal.seal(seal_to, peer_ticket(record.placement.key, tenant, expires), "peer ticket")
        except seal.SealError as exc:
            raise InvalidRequest(f"seal_to: {exc}") from None
        return {"address": record.placement.address, "ticket": sealed,
                "version": record.version, "concurrency": record.spec.max_concurrency,
                "queue": self.config.limits.service_queue_limit}
