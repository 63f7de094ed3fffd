"""The credential parsers (Authorization, Basic, RFC 3339) and the head edits, by property:
what they accept round-trips, anything else is None (or ValueError), never an exception."""

from __future__ import annotations

import base64
import string
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.filters.credentials import (
    MAX_CREDENTIAL,
    edit_head,
    identity_value,
    parse_authorization,
    parse_basic,
)
from outwork.filters.rfc3339 import parse_rfc3339
from tests.filters.fake import block_headers, request

schemes = st.text(string.ascii_letters + string.digits + "!#$%&'*+.^_`|~-", min_size=1, max_size=20)
token68 = st.text(string.ascii_letters + string.digits + "-._~+/", min_size=1, max_size=200).map(
    lambda t: t + "=" * (len(t) % 3)
)
printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@given(schemes, token68, st.sampled_from([" ", "  ", " \t "]))
def test_authorization_round_trips(scheme: str, token: str, space: str) -> None:
    value = f"{scheme}{space}{token}".encode()
    assert parse_authorization(value) == (scheme.lower().encode(), token.encode())


@given(st.binary(max_size=300))
def test_authorization_never_raises(value: bytes) -> None:
    result = parse_authorization(value)
    if result is not None:
        scheme, token = result
        assert scheme and token and b" " not in token


def test_authorization_is_capped() -> None:
    assert parse_authorization(b"Bearer " + b"a" * MAX_CREDENTIAL) is None
    assert parse_authorization(b"Bearer") is None
    assert parse_authorization(b"Bearer a b") is None


@given(
    printable.filter(lambda u: ":" not in u),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
)
def test_basic_round_trips(user: str, password: str) -> None:
    token = base64.b64encode(f"{user}:{password}".encode())
    assert parse_basic(token) == (user, password)


@given(st.binary(max_size=200))
def test_basic_never_raises(token: bytes) -> None:
    result = parse_basic(token)
    if result is not None:
        assert result[0] and ":" not in result[0]


@pytest.mark.parametrize("text", ["nocolon", ":nouser", "a:b\x00c", "a\nb:c"])
def test_basic_refuses(text: str) -> None:
    assert parse_basic(base64.b64encode(text.encode())) is None
    assert parse_basic(b"not base64!") is None
    assert parse_basic(base64.b64encode(b"\xff:\xfe")) is None  # not UTF-8


@given(st.sampled_from(["api_key", "jwt", "basic", "mtls"]), st.text(max_size=60))
def test_identity_values_are_visible_ascii_and_decode_back(kind: str, subject: str) -> None:
    value = identity_value(kind, subject)
    assert all(0x21 <= b <= 0x7E for b in value)
    assert unquote_to_bytes(value) == f"{kind}:{subject}".encode()


names = st.sampled_from(["Authorization", "X-API-Key", "x-api-key", "Accept", "X-Who", "Cookie"])


@given(st.lists(st.tuples(names, st.text(string.ascii_letters, max_size=8)), max_size=8))
def test_edit_head_removes_from_block_and_headers_alike(pairs: list[tuple[str, str]]) -> None:
    head = request(*pairs)
    edit_head(head, frozenset({b"authorization", b"x-api-key"}), b"X-Who", b"jwt:a")
    kept = [(n.lower(), v) for n, v in pairs if n.lower() not in ("authorization", "x-api-key")]
    assert block_headers(head) == [*kept, ("x-who", "jwt:a")]
    assert [(n.decode().lower(), v.decode()) for n, v in head.headers[1:]] == block_headers(head)


STAMPED = b"x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: https\r\nx-request-id: 1\r\n"


def test_edit_head_leaves_the_gateways_lines_unless_one_is_named() -> None:
    """The gateway's own lines go upstream after the block: an edit reads the client's lines
    only, unless it names one of the gateway's (what the same edit of block and stamped
    lines in one would have removed)."""
    head = request(("X-Api-Key", "k"), ("Accept", "*/*"))
    head.stamped = STAMPED
    edit_head(head, frozenset({b"x-api-key", b"x-who"}), b"X-Who", b"api_key:a")
    assert head.block == b"Accept: */*\r\nX-Who: api_key:a\r\n"
    assert head.stamped == STAMPED
    edit_head(head, frozenset({b"x-request-id", b"x-who"}), b"X-Who", b"jwt:b")
    assert head.block == b"Accept: */*\r\nX-Who: jwt:b\r\n"
    assert head.stamped == b"x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: https\r\n"


datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
)


@given(datetimes, st.integers(-23 * 60, 23 * 60), st.sampled_from(["T", "t", " "]))
def test_rfc3339_round_trips(moment: datetime, minutes: int, sep: str) -> None:
    zone = timezone(timedelta(minutes=minutes))
    local = moment.astimezone(zone)
    text = local.isoformat(sep=sep)
    if minutes == 0 and moment.microsecond % 2:
        text = text.replace("+00:00", "Z")
    assert parse_rfc3339(text) == pytest.approx(moment.timestamp(), abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-06",
        "2026-12-06T22:00:00",  # no zone: refused, not the host's
        "2026-12-06T22:00Z",
        "2026-13-06T22:00:00Z",
        "2026-02-30T22:00:00Z",
        "yesterday",
        "2026-12-06T22:00:00.Z",
        "2026-12-06T22:00:00+2:00",
    ],
)
def test_rfc3339_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_rfc3339_fractions_beyond_microseconds() -> None:
    assert parse_rfc3339("1970-01-01T00:00:01.123456789Z") == pytest.approx(1.123456, abs=1e-6)
    assert parse_rfc3339("2026-12-06T22:00:00Z") == 1796594400.0


@given(st.text(max_size=40))
def test_rfc3339_raises_only_value_error(text: str) -> None:
    try:
        parse_rfc3339(text)
    except ValueError:
        pass
