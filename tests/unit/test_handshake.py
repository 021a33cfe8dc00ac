"""The call channel's handshake (solo/core/handshake.py): who a host lets in, and how a client knows
the host is real. Pure: both sides are run here by hand."""
from __future__ import annotations

import pytest

from solo.core import handshake
from solo.core.handshake import HandshakeError, identity_of, peer_ticket, proof, secret_for

KEY = "host-secret"


def run(host_key: str, credential: str, now: float = 500.0) -> float:
    """Both sides of one handshake; the expiry the host grants (raises HandshakeError on refusal)."""
    client_nonce = handshake.nonce()
    secret, expires = secret_for(host_key, identity_of(credential), now)     # host, on Hello
    host_nonce = handshake.nonce()
    host_proof = proof(secret, "host", client_nonce, host_nonce)
    handshake.check(credential, "host", client_nonce, host_nonce, host_proof)  # client, on Challenge
    client_proof = proof(credential, "client", client_nonce, host_nonce)
    handshake.check(secret, "client", client_nonce, host_nonce, client_proof)  # host, on Auth
    return expires


def test_the_host_key_lets_a_gateway_in_for_good():
    assert run(KEY, KEY, now=1e12) == 0.0


def test_the_hello_never_carries_the_secret():
    ticket = peer_ticket(KEY, "acme", 1000)
    assert identity_of(KEY) == ""
    assert identity_of(ticket) == "peer:acme:1000" and ticket.rsplit(":", 1)[1] not in identity_of(ticket)


def test_a_peer_ticket_lets_a_peer_in_until_it_expires():
    ticket = peer_ticket(KEY, "acme", expires=1000)
    assert run(KEY, ticket, now=999) == 1000
    with pytest.raises(HandshakeError):
        run(KEY, ticket, now=1000)


@pytest.mark.parametrize("forged", [
    peer_ticket("another-host", "acme", 1000),          # signed for another host
    peer_ticket(KEY, "acme", 1000).replace("acme", "beta"),  # tenant changed
    peer_ticket(KEY, "acme", 1000).replace(":1000:", ":9999:"),  # expiry pushed out
    "peer:acme:1000:", "peer:acme:x:y", "host-secre", "peer::1000:" + "0" * 64, "",
])
def test_forged_or_altered_credentials_are_refused(forged):
    with pytest.raises(HandshakeError):
        run(KEY, forged)


@pytest.mark.parametrize("identity", ["peer:acme", "peer:acme:soon", "other:acme:1000", "peer:a:b:c",
                                      "peer:acme:" + "9" * 40])
def test_malformed_identities_are_refused(identity):
    with pytest.raises(HandshakeError):
        secret_for(KEY, identity, now=0)


def test_a_process_that_does_not_hold_the_key_cannot_pass_as_the_host():
    client_nonce, host_nonce = handshake.nonce(), handshake.nonce()
    impostor = proof("guessed", "host", client_nonce, host_nonce)
    with pytest.raises(HandshakeError):
        handshake.check(KEY, "host", client_nonce, host_nonce, impostor)


def test_a_recorded_proof_does_not_pass_with_a_new_nonce_or_for_the_other_side():
    client_nonce, host_nonce = handshake.nonce(), handshake.nonce()
    recorded = proof(KEY, "client", client_nonce, host_nonce)
    with pytest.raises(HandshakeError):
        handshake.check(KEY, "client", client_nonce, handshake.nonce(), recorded)
    with pytest.raises(HandshakeError):  # a host's proof echoed back is not a client's
        handshake.check(KEY, "client", client_nonce, host_nonce, proof(KEY, "host", client_nonce, host_nonce))
    with pytest.raises(HandshakeError):
        handshake.check(KEY, "client", b"short", host_nonce, recorded)
