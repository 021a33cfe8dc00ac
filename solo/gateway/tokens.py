"""Token management at the gateway: mint, revoke and list, each recorded in the event log; and
the revocation list every gateway follows from the log (loaded before serving, then live)."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from solo.errors import InvalidRequest, NotFound, PermissionDenied, SoloError, Unauthenticated
from solo.events import readback
from solo.events.readback import BadRow, Skipped
from solo.events.reader import read_events
from solo.security.capabilities import Minted, authority, parse
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
        self.skipped = Skipped("following token revocations", log, every=60.0)  # one warning a minute at most

    async def mint(self, caller: Principal, metadata, tenant: str, rights: list[str], ttl_seconds: float,
                   operator: bool, description: str, who: dict) -> tuple[Minted, list[str]]:
        """A new token, never more than the caller's own: an attenuated token cannot mint (its checks
        would not carry over), and a tenant's new token expires no later than the minting one."""
        if len(description) > 200:
            raise InvalidRequest("description is longer than 200 characters")
        if len(caller.revocation_ids) > 1:
            raise PermissionDenied("an attenuated token cannot mint tokens: mint with the token it was derived from, "
                                   "or narrow this one locally with `solo tokens attenuate`")
        caller_token = bearer(metadata)
        if not caller.operator:
            if rights:  # never more than the minting token itself has
                missing = sorted(set(rights) - set(self.auth.rights_allowed(caller_token, rights)))
                if missing:
                    raise PermissionDenied(f"your token does not have the rights {missing}, so it cannot grant them")
            else:
                rights = self.auth.rights_allowed(caller_token, TENANT_RIGHTS)
            left = authority(parse(caller_token, self.auth.keys.public_key)).expires_at - time.time()
            if ttl_seconds > left:
                raise InvalidRequest(f"ttl_seconds {ttl_seconds:g} is past your own token's expiry "
                                     f"({left:.0f} s from now)")
            ttl_seconds = ttl_seconds or min(left, self.auth.token_ttl)
            if ttl_seconds < 1:
                raise PermissionDenied("your token expires within a second; it cannot mint")
        minted = self.auth.mint(caller, tenant, rights, ttl_seconds, operator)
        rights = rights or list(TENANT_RIGHTS)
        await self._record(MINTED, tenant, minted.revocation_id, who, {
            "revocation_id": minted.revocation_id, "rights": rights, "expires_at": minted.expires_at,
            "key_id": minted.key_id, "operator": operator, "description": description})
        return minted, rights  # only once the event is durable: an unrecorded token is never handed out

    async def revoke(self, caller: Principal, revocation_id: str, token: str, reason: str, who: dict) -> tuple:
        """Revoke a token of the caller's tenant (any tenant's for the operator); operator tokens
        only by the operator. Otherwise the same NOT_FOUND as for an id nobody minted."""
        if bool(revocation_id) == bool(token):
            raise InvalidRequest("give either revocation_id or token")
        if token:
            try:
                parsed = parse(token, self.auth.keys.public_key)
            except Unauthenticated as exc:  # the caller is authenticated: it is the argument that is wrong
                raise InvalidRequest(f"the token to revoke cannot be used ({exc.message[:300]}); pass the whole token, or "
                                     "its revocation_id (`solo tokens list`)") from None
            revocation_id = parsed.revocation_ids[-1]
            owner = authority(parsed)
            tenant, is_operator = owner.tenant, owner.operator
        else:
            if len(revocation_id) != 128 or any(c not in "0123456789abcdef" for c in revocation_id):
                raise InvalidRequest("revocation_id must be 128 hex characters (see `solo tokens list`)")
            tenant, is_operator = await asyncio.to_thread(self._minted, revocation_id)
        if tenant is None or (not caller.operator and (tenant != caller.tenant or is_operator)):
            raise NotFound("no token with that revocation id was minted for your tenant")
        await self._record(REVOKED, tenant, revocation_id, who, {"revocation_id": revocation_id,
                                                                 "reason": reason[:200]})
        self.revocations.add([revocation_id])
        return revocation_id, tenant

    def _minted(self, revocation_id: str) -> tuple[str | None, bool]:
        """(tenant, operator) of the token minted with this revocation id, or (None, False)."""
        skipped = Skipped("looking up a minted token", log)
        found = None, False
        for row in _rows(read_events(self.data_dir, type=MINTED, subject=revocation_id[:16])):
            try:
                minted = _minted_row(row)
            except BadRow as exc:
                skipped.skip(f"event {row['id']}", exc)
                continue
            if minted["revocation_id"] == revocation_id:
                found = minted["tenant"], minted["operator"]
                break
        skipped.report()
        return found

    def list(self, tenant: str | None, include_operator: bool) -> list[dict]:
        skipped = Skipped("listing tokens", log)
        revoked = set(_revocation_ids(read_events(self.data_dir, tenant=tenant, type=REVOKED), skipped))
        out = []
        for row in _rows(read_events(self.data_dir, tenant=tenant, type=MINTED)):
            try:
                minted = _minted_row(row)
            except BadRow as exc:
                skipped.skip(f"event {row['id']}", exc)
                continue
            if minted["operator"] and not include_operator:
                continue  # operator tokens are the operator's business, even in tenant "default"
            out.append({**minted, "revoked": minted["revocation_id"] in revoked})
        skipped.report()
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
        skipped = Skipped("loading token revocations", log)
        self.revocations.add(_revocation_ids(table, skipped))
        skipped.report()
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
            self.revocations.add(_revocation_ids(table, self.skipped))
            self.skipped.report()


def _revocation_ids(table, skipped: Skipped) -> list[str]:
    """The revocation ids named by the `token.revoked` rows of `table`; malformed rows are skipped (an id
    in another shape could never match a token, so no revoked token becomes valid by the skip)."""
    ids = []
    for event_id, kind, raw in zip(*(table.column(c).to_pylist() for c in ("id", "type", "payload"))):
        if kind != REVOKED:
            continue
        try:
            ids.append(readback.revocation_id(readback.payload(raw)))
        except BadRow as exc:
            skipped.skip(f"event {event_id}", exc)
    return ids


def _rows(table) -> list[dict]:
    """Rows as dicts with the time as unix seconds (a forged far-future time cannot fail the read)."""
    return readback.with_seconds(table).to_pylist()


def _minted_row(row: dict) -> dict:
    """What `solo tokens list` shows of a `token.minted` row; BadRow if it is not in Solo's shape."""
    p = readback.payload(row["payload"])
    rights = p.get("rights")
    if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
        raise BadRow("'rights' is not a list of names")
    return {"revocation_id": readback.revocation_id(p), "tenant": readback.name(row["tenant"], "tenant"),
            "rights": rights, "description": readback.text(p, "description", ""),
            "created_at": row["time"] or 0.0, "expires_at": readback.number(p, "expires_at"),
            "operator": readback.flag(p, "operator", False), "key_id": readback.integer(p, "key_id", 0),
            "minted_by": row["principal"] or ""}


__all__ = ["TokenService"]
