"""The client address the policy sees: the TCP peer, unless a trusted proxy forwards for
someone; then the first untrusted hop read from the right of X-Forwarded-For."""

from __future__ import annotations

import ipaddress

from outwork.proxy.forwarding import client_address

PROXIES = [ipaddress.ip_network("10.0.0.0/8")]


def test_an_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    assert client_address("203.0.113.9", b"127.0.0.1", PROXIES) == "203.0.113.9"
    assert client_address("10.1.1.1", None, PROXIES) == "10.1.1.1"


def test_a_trusted_proxy_names_the_client_and_earlier_claims_are_ignored() -> None:
    # The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
    assert client_address("10.1.1.1", b"6.6.6.6, 198.51.100.7", PROXIES) == "198.51.100.7"
    # Two trusted proxies in a row: the hop before them is the client.
    assert client_address("10.1.1.1", b"198.51.100.7, 10.2.2.2", PROXIES) == "198.51.100.7"
    assert client_address("10.1.1.1", b" 2001:db8::1 ", PROXIES) == "2001:db8::1"


def test_garbage_in_the_chain_stops_at_the_last_trusted_hop() -> None:
    assert client_address("10.1.1.1", b"198.51.100.7, nonsense", PROXIES) == "10.1.1.1"
    assert client_address("10.1.1.1", b"nonsense, 10.2.2.2", PROXIES) == "10.2.2.2"
