"""The per-source handshake cap counts a source as an attacker holds addresses: an IPv6 /64 is one source (one
machine is commonly given a whole /64), an IPv4-mapped IPv6 address is its IPv4 address."""
from __future__ import annotations

from solo.runtime.host_listener import source_of


def test_an_ipv6_64_is_one_source():
    a = source_of("2001:db8:1:2::1")
    assert a == "2001:db8:1:2::/64"
    assert {source_of(f"2001:db8:1:2:{i:x}:{i:x}::{i:x}") for i in range(1, 1000)} == {a}
    assert source_of("2001:db8:1:2:ffff:ffff:ffff:ffff") == a
    assert source_of("2001:db8:1:3::1") != a  # the next /64 is another source
    assert source_of("fe80::1%eth0") == source_of("fe80::2") == "fe80::/64"


def test_ipv4_sources_stay_exact_and_mapped_ones_count_as_ipv4():
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("192.0.2.8") == "192.0.2.8"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_of("::ffff:c000:207") == "192.0.2.7"
