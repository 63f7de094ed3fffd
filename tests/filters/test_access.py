"""`access`: CIDR allow and deny on the client address after trusted_proxies; deny wins, an
empty allow allows all, IPv4-mapped IPv6 is its IPv4; refused 403 ACCESS_DENIED."""

from __future__ import annotations

import ipaddress

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.filters import CONTINUE, Reply
from outwork.filters.access import AccessSpec, build, parse_network
from outwork.observe.refusals import Refusal
from tests.filters.fake import FakeContext, request, run_head

ISSUE = {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.6.6.0/24"]}


def _access(spec: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return build(msgspec.convert(spec, AccessSpec, strict=True))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.6.6.7", False),  # denied inside an allowed network: deny wins
        ("10.6.7.1", True),
        ("192.0.2.1", False),  # not in allow
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped: its IPv4
        ("::ffff:10.6.6.7", False),  # the other spelling does not pass the deny
        ("not an address", False),
    ],
)
def test_issue_rules(address: str, allowed: bool) -> None:
    ctx = FakeContext(client_ip=address)
    verdict = run_head(_access(ISSUE), ctx, request())
    if allowed:
        assert verdict is CONTINUE
    else:
        assert verdict == Reply(403, Refusal.ACCESS_DENIED, detail={"client": address})


def test_an_empty_allow_allows_everything_not_denied() -> None:
    f = _access({"deny": ["192.0.2.0/24", "::1/128"]})
    assert f.allows("198.51.100.1") and f.allows("2001:db8::1")
    assert not f.allows("192.0.2.99") and not f.allows("::1")


def test_a_mapped_rule_is_its_ipv4_rule() -> None:
    f = _access({"deny": ["::ffff:10.0.0.0/104"]})
    assert not f.allows("10.9.9.9") and not f.allows("::ffff:10.9.9.9")
    assert f.allows("11.0.0.1")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"allow": ["10.0.0.1/8"]}, "did you mean 10.0.0.0/8"),
        ({"deny": ["10.0.0.0/33"]}, "invalid network"),
        ({"deny": ["example.com"]}, "invalid network"),
        ({}, "needs `allow` or `deny`"),
    ],
)
def test_bad_rules_are_config_errors(spec: dict[str, list[str]], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(spec, AccessSpec, strict=True)


networks = st.one_of(
    st.builds(
        lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, p: ipaddress.IPv6Network((a, p), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    ),
)
addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)


@given(st.lists(networks, max_size=8), st.lists(networks, min_size=1, max_size=8), addresses)
def test_matches_the_plain_definition(allow, deny, address) -> None:  # type: ignore[no-untyped-def]
    f = _access({"allow": [str(n) for n in allow], "deny": [str(n) for n in deny]})
    plain = address.ipv4_mapped if getattr(address, "ipv4_mapped", None) else address

    def inside(nets: list) -> bool:  # type: ignore[type-arg]
        return any(plain in parse_network(str(n)) for n in nets)

    expected = not inside(deny) and (not allow or inside(allow))
    assert f.allows(str(address)) is expected
