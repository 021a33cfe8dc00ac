"""How the two ends of a call connection prove who they are, without sending the secret.

The secret of a connection is the host's key (gateways get it through the route table) or a peer
ticket (an HMAC under the host key naming the calling tenant and an expiry; the registry gives it
to a service that may call the host directly, `solo.discover`). The client sends Hello (its
identity, never the secret, and a nonce); the host answers Challenge (its nonce and a proof
under the secret), which the client checks before it sends anything else; the client answers
Auth (its own proof). Each side's proof covers both nonces, so neither can be replayed, and a
process that merely listens on the host's port cannot pass as the host. Pure: no I/O.
"""
from __future__ import annotations

import hashlib
import hmac
import os

NONCE_BYTES = 16
MAX_HANDSHAKE_FRAME = 512  # a Hello or an Auth is far smaller; a host reads no more before the proof
PEER_TICKET_SECONDS = 30.0  # how long a ticket for a direct call (solo.discover) lets a connection in


class HandshakeError(Exception):
    """The other end could not prove it holds the connection's secret."""


def peer_ticket(host_key: str, tenant: str, expires: float) -> str:
    """What a peer holds instead of the host key: the calling tenant, an expiry and an HMAC under the
    host key, so the key itself never leaves the registry and the gateways, and a ticket ends."""
    body = f"{tenant}:{int(expires)}"
    mac = hmac.new(host_key.encode(), f"peer:{body}".encode(), hashlib.sha256).hexdigest()
    return f"peer:{body}:{mac}"


def identity_of(credential: str) -> str:
    """What a client names in its Hello: "" for the host key, the ticket without its MAC for a peer."""
    if credential.startswith("peer:"):
        return credential.rsplit(":", 1)[0]
    return ""


def secret_for(host_key: str, identity: str, now: float) -> tuple[str, float]:
    """The host's side: the secret the client must prove, and its expiry (0.0 for a gateway)."""
    if identity == "":
        return host_key, 0.0
    parts = identity.split(":")
    if len(parts) == 3 and parts[0] == "peer" and parts[2].isdigit() and len(parts[2]) <= 12:
        expires = float(parts[2])
        if now < expires:
            return peer_ticket(host_key, parts[1], expires), expires
        raise HandshakeError("the peer ticket expired")
    raise HandshakeError("an identity that is neither a gateway nor a peer ticket")


def nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def proof(secret: str, side: str, client_nonce: bytes, host_nonce: bytes) -> bytes:
    return hmac.new(secret.encode(), f"solo-{side}".encode() + client_nonce + host_nonce, hashlib.sha256).digest()


def check(secret: str, side: str, client_nonce: bytes, host_nonce: bytes, presented: bytes) -> None:
    if len(client_nonce) != NONCE_BYTES or len(host_nonce) != NONCE_BYTES:
        raise HandshakeError("a nonce of the wrong size")
    if not hmac.compare_digest(proof(secret, side, client_nonce, host_nonce), presented):
        raise HandshakeError(f"the {side} did not prove it holds the connection's secret")


__all__ = ["HandshakeError", "MAX_HANDSHAKE_FRAME", "NONCE_BYTES", "PEER_TICKET_SECONDS", "check",
           "identity_of", "nonce", "peer_ticket", "proof", "secret_for"]
