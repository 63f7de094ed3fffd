"""The key a client address is counted under (rate limits by `client_address`, bans).

An IPv4 address counts as itself. An IPv6 address counts by its first `ipv6_prefix` bits: a
subscriber gets at least a /64 (RFC 6177), and every one of its 2^64 addresses is a new /128
for free, so a limit or a ban per /128 would not hold it back. An IPv4-mapped address
(`::ffff:192.0.2.1`, what a dual-stack socket reports) is its IPv4 address.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

IPV6_PREFIX: Final = (
    64  # the default: one subscriber's network (rate_limit_spec.Ipv6Prefix: the range)
)


def address_key(text: str, ipv6_prefix: int) -> str:
    """`text` (a client address) as counted: itself for IPv4 or what cannot be read, the
    network `2001:db8:1:2::/64` for IPv6 (`/128` too: one address, spelt one way)."""
    if ":" not in text:
        return text  # IPv4 (or unreadable): the hot path parses nothing
    return _ipv6_key(text, ipv6_prefix)


@lru_cache(maxsize=4096)  # parsing costs more than a limit's check: repeat clients are cached
def _ipv6_key(text: str, ipv6_prefix: int) -> str:
    try:
        address = ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return text
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    network = ipaddress.IPv6Network((address, ipv6_prefix), strict=False)
    return str(network)
