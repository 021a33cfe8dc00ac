"""Which resolved addresses an egress rule's name may reach (solo/runtime/egress.py): public ones only,
including through IPv6 forms that carry an IPv4 address."""
from __future__ import annotations

import ipaddress
import socket

import pytest

from solo.runtime.egress import _global, _public


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_are_reachable(address):
    assert _global(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.5", "169.254.169.254", "192.168.1.1", "100.64.0.1", "0.0.0.0", "::1", "fd00::2",
    "::ffff:10.0.0.1",     # IPv4-mapped
    "64:ff9b::a00:5",      # NAT64 of 10.0.0.5
    "2002:7f00:1::",       # 6to4 of 127.0.0.1
    "::127.0.0.1",         # IPv4-compatible
])
def test_internal_addresses_and_ipv6_forms_of_them_are_not(address):
    assert not _global(ipaddress.ip_address(address))


def test_a_name_is_refused_when_every_address_is_internal_and_a_literal_rule_is_not():
    info = lambda a: (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 443))  # noqa: E731
    with pytest.raises(PermissionError, match="non-public"):
        _public("internal.example", [info("10.0.0.5"), info("64:ff9b::a00:5")])
    assert _public("mixed.example", [info("10.0.0.5"), info("8.8.8.8")])[4][0] == "8.8.8.8"
    assert _public("10.0.0.5", [info("10.0.0.5")])[4][0] == "10.0.0.5"  # the operator named it
