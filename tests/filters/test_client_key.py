"""The key a client address counts under (outwork/filters/client_key.py): IPv4 as itself, IPv6
by its network of `ipv6_prefix` bits."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.filters.client_key import address_key


@pytest.mark.parametrize(
    ("text", "prefix", "key"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),  # one spelling per network
        ("2001:db8:1:2::1", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2::1", 128, "2001:db8:1:2::1/128"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # a dual-stack socket's IPv4 client
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("::1", 64, "::/64"),
        ("not:an:address", 64, "not:an:address"),  # unreadable: counted as written
        ("", 64, ""),
    ],
)
def test_address_key(text: str, prefix: int, key: str) -> None:
    assert address_key(text, prefix) == key


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1), st.integers(48, 128))
def test_two_ipv6_addresses_share_a_key_exactly_when_their_prefixes_match(
    first: int, second: int, prefix: int
) -> None:
    a, b = ipaddress.IPv6Address(first), ipaddress.IPv6Address(second)
    if a.ipv4_mapped is not None or b.ipv4_mapped is not None:
        return  # counted as IPv4: test_address_key
    same = first >> (128 - prefix) == second >> (128 - prefix)
    assert (address_key(str(a), prefix) == address_key(str(b), prefix)) == same
    assert a in ipaddress.IPv6Network(address_key(str(a), prefix))


@given(st.text(max_size=60), st.integers(48, 128))
def test_any_text_gives_a_key(text: str, prefix: int) -> None:
    assert isinstance(address_key(text, prefix), str)
