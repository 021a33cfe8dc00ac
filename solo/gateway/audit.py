"""Security events from the gateway: tokens minted and revoked, attenuated tokens first seen, and
refusals, which are counted and written as one `auth.denied` summary per tenant every few
seconds (an attacker cannot flood the log by failing often)."""
from __future__ import annotations

import asyncio
import logging
from collections import Counter

from solo.errors import SoloError
from solo.security.capabilities import Grant, Request

log = logging.getLogger("solo.gateway")
MAX_LISTED = 100


class Audit:
    def __init__(self, event_log=None, every: float = 10.0):
        self.event_log = event_log
        self.every = every
        self._denied: Counter[tuple[str, str, str]] = Counter()
        self._pending: list[dict] = []
        self._unlisted: Counter[str] = Counter()  # attenuated tokens past the per-window cap, per tenant
        self._shed: Counter[tuple[str, str, str]] = Counter()  # (tenant, service, reason) of shed calls

    def denied(self, exc: SoloError, request: Request) -> None:
        """Count one refusal (tenant if the token named one, else "")."""
        self._denied[(getattr(exc, "tenant", "") or "", exc.code, request.operation)] += 1

    def shed(self, tenant: str, service: str, reason: str) -> None:
        """Count one call shed by admission (summarised as `calls.shed`, never one event per call)."""
        self._shed[(tenant, service, reason)] += 1

    def breaker(self, key: tuple, state: str, reason: str) -> None:
        """A service version's circuit breaker changed state."""
        tenant, service, version = key
        self._pending.append({"tenant": tenant, "type": "service.breaker", "subject": service,
                              "payload": {"version": version, "state": state, "reason": reason}})

    def first_seen(self, grant: Grant) -> None:
        """An attenuated token reached the gateway for the first time (at most MAX_LISTED events per
        window; beyond that they are counted, so minting tokens offline cannot flood the log)."""
        if len(self._pending) >= MAX_LISTED:
            self._unlisted[grant.tenant] += 1
            return
        self._pending.append({"tenant": grant.tenant, "type": "token.attenuated",
                              "subject": grant.revocation_ids[0][:16],
                              "payload": {"revocation_ids": list(grant.revocation_ids), "blocks": grant.blocks}})

    def rows(self) -> list[dict]:
        """Take what is due: summaries of the refusals counted so far, then the other events."""
        by_tenant: dict[str, dict] = {}
        for (tenant, code, operation), count in self._denied.items():
            by_tenant.setdefault(tenant, {})[f"{code} {operation}"] = count
        self._denied.clear()
        shed: dict[str, dict] = {}
        for (tenant, service, reason), count in self._shed.items():
            shed.setdefault(tenant, {})[f"{service or '-'} {reason}"] = count
        self._shed.clear()
        rows = [{"tenant": tenant, "type": "auth.denied", "subject": "gateway",
                 "payload": {"counts": counts, "total": sum(counts.values()), "window_seconds": self.every}}
                for tenant, counts in sorted(by_tenant.items())]
        rows += [{"tenant": tenant, "type": "calls.shed", "subject": "gateway",
                  "payload": {"counts": counts, "total": sum(counts.values()), "window_seconds": self.every}}
                 for tenant, counts in sorted(shed.items())]
        rows += self._pending
        rows += [{"tenant": tenant, "type": "token.attenuated", "subject": "many",
                  "payload": {"unlisted": count, "window_seconds": self.every}}
                 for tenant, count in sorted(self._unlisted.items())]
        self._pending = []
        self._unlisted.clear()
        return rows

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.flush()

    async def flush(self) -> None:
        rows = self.rows()
        if not rows or self.event_log is None:
            return
        try:
            await self.event_log.append(rows)
        except SoloError as exc:  # the log is down: keep the counts for the next round
            log.warning("security audit events not written (%s); retrying", exc.message)
            self._pending = [r for r in rows if r["type"] != "auth.denied"] + self._pending
            for row in rows:
                if row["type"] == "auth.denied":
                    for key, count in row["payload"]["counts"].items():
                        code, operation = key.split(" ", 1)
                        self._denied[(row["tenant"], code, operation)] += count


__all__ = ["Audit"]
