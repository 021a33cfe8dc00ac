"""Tickets for direct calls between services (solo/runtime/host_server.py): what a host lets in."""
from __future__ import annotations

import pytest

from solo.core.frames import FrameError
from solo.runtime.host_server import check_hello, peer_ticket

KEY = "host-secret"


def test_the_host_key_lets_a_gateway_in_for_good():
    assert check_hello(KEY, KEY, now=1e12) == 0.0


def test_a_peer_ticket_lets_a_peer_in_until_it_expires():
    ticket = peer_ticket(KEY, "acme", expires=1000)
    assert check_hello(KEY, ticket, now=999) == 1000
    with pytest.raises(FrameError):
        check_hello(KEY, ticket, now=1000)


@pytest.mark.parametrize("forged", [
    peer_ticket("another-host", "acme", 1000),          # signed for another host
    peer_ticket(KEY, "acme", 1000).replace("acme", "beta"),  # tenant changed
    peer_ticket(KEY, "acme", 1000).replace(":1000:", ":9999:"),  # expiry pushed out
    "peer:acme:1000", "peer:acme:x:y", "", "host-secre", "peer::1000:" + "0" * 64,
])
def test_forged_or_altered_tickets_are_refused(forged):
    with pytest.raises(FrameError):
        check_hello(KEY, forged, now=500)
