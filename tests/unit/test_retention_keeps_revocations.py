"""Retention never drops `token.revoked` events: a revoked token stays refused after the segment that
recorded its revocation is past retention (by age or by size) and the gateway loads the revocations again.

Real pieces: a real event log (WAL and Parquet segments), a real key ring, verifier and TokenService."""
from __future__ import annotations

import asyncio
import time

import pytest

from solo.errors import Unauthenticated
from solo.events import read_events
from solo.events.log import EventLog
from solo.gateway.tokens import TokenService
from solo.security.capabilities import Request
from solo.security.keys import KeyRing
from solo.security.tokens import CapabilityAuthenticator, ensure_operator_token
from solo.security.verifier import RevocationSet, TokenVerifier

DAY = 86_400


class LogFeed:
    """What the gateway's TokenService needs of the event-log actor, over a real EventLog."""

    def __init__(self, log: EventLog):
        self.log = log

    async def append(self, rows):
        return self.log.append(rows)

    async def status(self):
        return {"last_id": self.log.last_id, "failure": ""}


def gateway_tokens(data_dir, feed=None) -> TokenService:
    """A freshly started gateway's token service: an empty revocation list, then the log's."""
    keys = KeyRing(data_dir / "keys")
    auth = CapabilityAuthenticator(keys, TokenVerifier(keys, RevocationSet(), cache_seconds=0))
    tokens = TokenService(data_dir, auth, feed)
    asyncio.run(tokens.load_revocations())
    return tokens


def uses(tokens: TokenService, token: str) -> bool:
    try:
        tokens.auth.authenticate([("authorization", f"Bearer {token}")], Request("invoke", "echo", "echo"))
        return True
    except Unauthenticated:
        return False


@pytest.mark.parametrize("how", ["age", "bytes"])
def test_a_revoked_token_stays_refused_after_retention_drops_its_segment(tmp_path, how):
    events = tmp_path / "events"
    ten_days_ago = time.time() - 10 * DAY
    log = EventLog(events, clock=lambda: ten_days_ago)
    feed = LogFeed(log)
    tokens = gateway_tokens(tmp_path, feed)
    who = {"principal": "operator", "request_id": "r1"}
    operator_token = ensure_operator_token(tokens.auth.keys, tmp_path / "operator.token").read_text().strip()
    metadata = [("authorization", f"Bearer {operator_token}")]
    operator = tokens.auth.authenticate(metadata, Request("mint"))
    minted, _ = asyncio.run(tokens.mint(operator, metadata, "alice", [], 3600, False, "", who))
    kept, _ = asyncio.run(tokens.mint(operator, metadata, "alice", [], 3600, False, "", who))
    assert uses(tokens, minted.token)
    asyncio.run(tokens.revoke(operator, "", minted.token, "leaked", who))
    assert not uses(tokens, minted.token) and uses(tokens, kept.token)
    log.append([{"tenant": "alice", "type": "service.called", "subject": "echo"} for _ in range(50)])
    log.roll()  # the mint, the revocation and other old events: one segment, ten days old
    log.clock = time.time
    log.append([{"tenant": "alice", "type": "service.called", "subject": "echo"}])
    log.roll()  # a newer segment (retention never touches the newest one)
    old = sorted(events.glob("segment-*.parquet"))[0]
    if how == "age":
        assert log.apply_retention(max_age_seconds=1 * DAY) == [old]
    else:
        assert log.apply_retention(max_bytes=1) == [old]
    left = read_events(tmp_path).column("type").to_pylist()
    assert "token.minted" not in left and "service.called" in left  # retention did drop the rest
    assert left.count("token.revoked") == 1
    log.wal.close()

    reopened = EventLog(events)  # the log starts again on the rewritten segment
    restarted = gateway_tokens(tmp_path, LogFeed(reopened))  # a gateway (re)starting: revocations from the log
    assert not uses(restarted, minted.token)
    assert uses(restarted, kept.token)
    assert reopened.apply_retention(max_age_seconds=1 * DAY, max_bytes=1) == []  # nothing more to drop
    assert not uses(gateway_tokens(tmp_path, LogFeed(reopened)), minted.token)
