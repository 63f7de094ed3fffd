"""The `access` step's config schema (access.py is the step): msgspec Structs stay in an
interpreted module, as mypyc drops their class keywords (`forbid_unknown_fields`)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec
from msgspec import Meta

MAX_RULES = 4096  # networks per list: far more than any hand-kept list
Network = Annotated[str, Meta(min_length=1, max_length=64)]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AccessSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    allow: Annotated[list[Network], Meta(max_length=MAX_RULES)] = msgspec.field(
        default_factory=list
    )
    deny: Annotated[list[Network], Meta(max_length=MAX_RULES)] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for text in [*self.allow, *self.deny]:
            parse_network(text)
        if not self.allow and not self.deny:
            raise ValueError("access needs `allow` or `deny` (or both)")


def parse_network(text: str) -> IPNetwork:
    """A CIDR (`10.0.0.0/8`) or a single address. Raises ValueError for the user."""
    try:
        network = ipaddress.ip_network(text)
    except ValueError:
        try:
            meant = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"invalid network {text!r} (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"
            ) from None
        # `10.1.2.3/8` names 10.0.0.0/8: say so rather than guess what was meant.
        raise ValueError(f"{text!r} has host bits set: did you mean {meant}?") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:10.0.0.0/104 is 10.0.0.0/8
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network
