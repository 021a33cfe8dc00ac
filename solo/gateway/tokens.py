"""Token management at the gateway: mint, revoke and list, each recorded in the event log; and
the revocation list every gateway follows from the log (loaded before serving, then live)."""
from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import biscuit_auth as biscuit

from solo.errors import InvalidRequest, NotFound, PermissionDenied, SoloError
from solo.events.reader import read_events
from solo.security.capabilities import Minted, parse
from solo.security.tokens import TENANT_RIGHTS, CapabilityAuthenticator, Principal, bearer
from solo.security.verifier import RevocationSet

log = logging.getLogger("solo.gateway")
REVOKED, MINTED = "token.revoked", "token.minted"


class TokenService:
    def __init__(self, data_dir: Path, authenticator: CapabilityAuthenticator, event_log):
        self.data_dir = data_dir
        self.auth = authenticator
        self.revocations: RevocationSet = authenticator.verifier.revocations
        self.event_log = event_log

    async def mint(self, caller: Principal, metadata, tenant: str, rights: list[str], ttl_seconds: float,
                   operator: bool, description: str, who: dict) -> tuple[Minted, list[str]]:
        if len(description) > 200:
            raise InvalidRequest("description is longer than 200 characters")
        if rights and not caller.operator:  # never more than the minting token itself has
            missing = sorted(set(rights) - set(self.auth.rights_allowed(bearer(metadata), rights)))
            if missing:
                raise PermissionDenied(f"your token does not have the rights {missing}, so it cannot grant them")
        elif not caller.operator:
            rights = self.auth.rights_allowed(bearer(metadata), TENANT_RIGHTS)
        minted = self.auth.mint(caller, tenant, rights, ttl_seconds, operator)
        rights = rights or list(TENANT_RIGHTS)
        await self._record(MINTED, tenant, minted.revocation_id, who, {
            "revocation_id": minted.revocation_id, "rights": rights, "expires_at": minted.expires_at,
            "key_id": minted.key_id, "operator": operator, "description": description})
        return minted, rights  # only once the event is durable: an unrecorded token is never handed out

    async def revoke(self, caller: Principal, revocation_id: str, token: str, reason: str, who: dict) -> tuple:
        if bool(revocation_id) == bool(token):
            raise InvalidRequest("give either revocation_id or token")
        if token:
            parsed = parse(token, self.auth.keys.public_key)
            revocation_id = parsed.revocation_ids[-1]
            tenant = await asyncio.to_thread(self._owner_of_token, parsed)
        else:
            if len(revocation_id) != 128 or any(c not in "0123456789abcdef" for c in revocation_id):
                raise InvalidRequest("revocation_id must be 128 hex characters (see `solo tokens list`)")
            tenant = await asyncio.to_thread(self._minted_tenant, revocation_id)
        if tenant is None or (tenant != caller.tenant and not caller.operator):
            # the same answer whether the id belongs to another tenant or to nobody
            raise NotFound("no token with that revocation id was minted for your tenant")
        await self._record(REVOKED, tenant, revocation_id, who, {"revocation_id": revocation_id,
                                                                 "reason": reason[:200]})
        self.revocations.add([revocation_id])
        return revocation_id, tenant

    @staticmethod
    def _owner_of_token(parsed) -> str | None:
        """The tenant a (verified) token was minted for: its authority block's tenant fact."""
        found = biscuit.AuthorizerBuilder("allow if true;").build(parsed).query(biscuit.Rule("t($t) <- tenant($t)"))
        return found[0].terms[0] if len(found) == 1 else None

    def _minted_tenant(self, revocation_id: str) -> str | None:
        table = read_events(self.data_dir, type=MINTED, subject=revocation_id[:16])
        for row in table.to_pylist():
            if json.loads(row["payload"]).get("revocation_id") == revocation_id:
                return row["tenant"]
        return None

    def list(self, tenant: str | None) -> list[dict]:
        minted = read_events(self.data_dir, tenant=tenant, type=MINTED).to_pylist()
        revoked = {json.loads(r["payload"])["revocation_id"]
                   for r in read_events(self.data_dir, tenant=tenant, type=REVOKED).to_pylist()}
        out = []
        for row in minted:
            p = json.loads(row["payload"])
            out.append({"revocation_id": p["revocation_id"], "tenant": row["tenant"], "rights": p["rights"],
                        "description": p.get("description", ""), "created_at": row["time"].timestamp(),
                        "expires_at": p["expires_at"], "operator": p.get("operator", False),
                        "revoked": p["revocation_id"] in revoked, "key_id": p.get("key_id", 0),
                        "minted_by": row["principal"] or ""})
        return out

    async def _record(self, kind: str, tenant: str, revocation_id: str, who: dict, payload: dict) -> None:
        await self.event_log.append([{"tenant": tenant, "type": kind, "subject": revocation_id[:16],
                                      "principal": who["principal"], "correlation_id": who["request_id"],
                                      "payload": payload}])

    # -- the revocation list ------------------------------------------------------------------------
    async def load_revocations(self) -> int:
        """Every revocation in the log so far (before the gateway serves); returns where to follow from."""
        last = (await self.event_log.status())["last_id"] if self.event_log is not None else 0
        table = await asyncio.to_thread(read_events, self.data_dir, type=REVOKED, max_id=last or None)
        self.revocations.add(json.loads(p)["revocation_id"] for p in table.column("payload").to_pylist())
        return last

    async def follow_revocations(self, after_id: int, poll_seconds: float = 5.0) -> None:
        """Apply revocations made through any gateway as they are committed (long-poll on the log)."""
        cursor = after_id
        while True:
            try:
                table = await self.event_log.since(cursor, 10_000, poll_seconds)
            except SoloError as exc:
                log.warning("following revocations paused (%s)", exc.message)
                await asyncio.sleep(1.0)
                continue
            if not table.num_rows:
                continue
            cursor = table.column("id")[-1].as_py()
            types = table.column("type").to_pylist()
            payloads = table.column("payload").to_pylist()
            self.revocations.add(json.loads(p)["revocation_id"] for t, p in zip(types, payloads) if t == REVOKED)


__all__ = ["TokenService"]
