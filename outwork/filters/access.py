"""`access`: who may connect at all, by the client's address (after `trusted_proxies`).

    policies: {partners: {access: {allow: [10.0.0.0/8, "2001:db8::/32"], deny: [10.6.6.0/24]}}}

`deny` wins over `allow`; an empty `allow` allows every address not denied. An IPv4-mapped
IPv6 address (`::ffff:10.1.2.3`, what a dual-stack socket reports) is its IPv4 address, so an
IPv4 rule cannot be passed by the other spelling. An address that cannot be read is refused.
Refused: 403, `Refusal.ACCESS_DENIED`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from outwork.filters import FilterType, register
from outwork.filters.access_spec import AccessSpec, IPNetwork, parse_network
from outwork.filters.api import CONTINUE, Filter, Reply, RequestContext, Resume, Verdict
from outwork.http.messages import RequestHead
from outwork.observe.refusals import Refusal


class NetworkSet:
    """Networks grouped by prefix length: a lookup masks the address once per length in use
    (at most 33 or 129), whatever the number of networks."""

    __slots__ = ("v4", "v6")

    def __init__(self, networks: list[IPNetwork]) -> None:
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for net in networks:
            table = v4 if net.version == 4 else v6
            table.setdefault(net.prefixlen, set()).add(int(net.network_address))
        self.v4 = _masks(v4, 32)
        self.v6 = _masks(v6, 128)

    def __contains__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        value = int(address)
        table = self.v4 if address.version == 4 else self.v6
        return any(value & mask in prefixes for mask, prefixes in table)

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)


def _masks(table: dict[int, set[int]], bits: int) -> tuple[tuple[int, frozenset[int]], ...]:
    full = (1 << bits) - 1
    return tuple(
        ((full << (bits - length)) & full, frozenset(prefixes))
        for length, prefixes in sorted(table.items())
    )


def client_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address for the rules (IPv4-mapped IPv6 as IPv4), None if unreadable."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


MAX_REMEMBERED: Final = 8192  # client addresses whose verdict is kept (all forgotten when full)


@dataclass(frozen=True, slots=True)
class AccessFilter(Filter):
    allow: NetworkSet  # empty: every address
    deny: NetworkSet
    # Verdicts by address as written: parsing an address costs more than the rules do.
    verdicts: dict[str, bool] = field(default_factory=dict, compare=False)

    def allows(self, text: str) -> bool:
        verdict = self.verdicts.get(text)
        if verdict is None:
            if len(self.verdicts) >= MAX_REMEMBERED:
                self.verdicts.clear()
            verdict = self.verdicts[text] = self._allows(text)
        return verdict

    def _allows(self, text: str) -> bool:
        address = client_address(text)
        if address is None:
            return False
        if address in self.deny:
            return False
        return not self.allow or address in self.allow

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        if self.allows(ctx.client_ip):
            return CONTINUE
        return Reply(403, Refusal.ACCESS_DENIED, detail={"client": ctx.client_ip})


def build(spec: AccessSpec) -> AccessFilter:
    allow = NetworkSet([parse_network(text) for text in spec.allow])
    deny = NetworkSet([parse_network(text) for text in spec.deny])
    return AccessFilter(allow, deny)


ACCESS: Final = register(FilterType("access", AccessSpec, build))
