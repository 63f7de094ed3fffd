"""The value parsers policy steps share (outwork/config/values.py), by example and by property."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.config.values import MAX_RATE_COUNT, parse_cidr, parse_rate

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("10/s", 10, 1),
        ("1000/m", 1000, 60),
        ("5/h", 5, 3600),
        ("100/d", 100, 86400),
        ("100/10s", 100, 10),
        (" 3/1.5m ", 3, 90),
    ],
)
def test_parse_rate(text: str, count: int, period: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period) == (count, period)
    assert rate.per_second == count / period
    assert str(rate) == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "10/",
        "/s",
        "0/s",
        "-1/s",
        "10/w",
        "10/0s",
        "1/400d",
        "10 / s",
        "99999999999/s",
        "1e3/s",
        "ten/s",
    ],
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(text)


def test_parse_rate_rejects_what_is_not_text() -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(10)  # type: ignore[arg-type]


@given(st.integers(1, MAX_RATE_COUNT), st.integers(1, 300), st.sampled_from(sorted(UNITS)))
def test_a_written_rate_reads_back(count: int, every: int, unit: str) -> None:
    rate = parse_rate(f"{count}/{every}{unit}")
    assert (rate.count, rate.period) == (count, every * UNITS[unit])
    assert rate == parse_rate(f"{count}/{every}{unit}")


@given(st.text(max_size=40))
def test_parse_rate_answers_any_text_with_a_rate_or_value_error(text: str) -> None:
    try:
        rate = parse_rate(text)
    except ValueError:
        return
    assert 1 <= rate.count <= MAX_RATE_COUNT and 0 < rate.period <= 86400 * 366


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("::1", "::1/128"),
        ("2001:db8::/32", "2001:db8::/32"),
        (" 10.6.6.0/24 ", "10.6.6.0/24"),
    ],
)
def test_parse_cidr(text: str, network: str) -> None:
    assert str(parse_cidr(text)) == network


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.0.0.1/8",
        "10.0.0.0/33",
        "256.0.0.0/8",
        "10.0.0.0/-1",
        "example.com",
        "2001:db8::1/32",
        "1" * 100,
    ],
)
def test_parse_cidr_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        parse_cidr(text)


@given(st.ip_addresses(), st.data())
def test_a_network_written_reads_back(address: ipaddress.IPv4Address, data: st.DataObject) -> None:
    prefix = data.draw(st.integers(0, address.max_prefixlen))
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert parse_cidr(str(network)) == network
    assert address in parse_cidr(str(network))


@given(st.text(max_size=70))
def test_parse_cidr_answers_any_text_with_a_network_or_value_error(text: str) -> None:
    try:
        network = parse_cidr(text)
    except ValueError:
        return
    assert isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
