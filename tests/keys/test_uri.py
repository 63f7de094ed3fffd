"""RFC 7512 PKCS#11 URI parsing: the attributes, percent-decoding, and one test per malformed
shape; a property test that nothing but ValueError ever comes out."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.keys.uri import MAX_URI_LENGTH, Pkcs11Uri, parse_pkcs11_uri


def test_the_example_from_the_issue() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=outwork;object=api-2026;type=private"
        "?pin-source=file:/path/pin.txt&module-path=/usr/lib/softhsm/libsofthsm2.so"
    )
    assert uri == Pkcs11Uri(
        token="outwork",
        object="api-2026",
        type="private",
        pin_source="file:/path/pin.txt",
        module_path="/usr/lib/softhsm/libsofthsm2.so",
    )


def test_every_standard_attribute() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=T;manufacturer=M;serial=0123;model=SoftHSM%20v2"
        ";library-manufacturer=LM;library-description=LD;library-version=2.6"
        ";object=O;type=cert;id=%00%ff%10;slot-description=SD;slot-manufacturer=SM;slot-id=7"
        "?pin-value=1234&module-name=softhsm2&module-path=/lib/p11.so"
    )
    assert uri.token == "T" and uri.manufacturer == "M" and uri.serial == "0123"
    assert uri.model == "SoftHSM v2"
    assert uri.library_manufacturer == "LM" and uri.library_description == "LD"
    assert uri.library_version == (2, 6)
    assert uri.object == "O" and uri.type == "cert" and uri.id == b"\x00\xff\x10"
    assert uri.slot_description == "SD" and uri.slot_manufacturer == "SM" and uri.slot_id == 7
    assert uri.pin_value == "1234" and uri.module_name == "softhsm2"
    assert uri.module_path == "/lib/p11.so"


def test_empty_uri_matches_everything() -> None:
    assert parse_pkcs11_uri("pkcs11:") == Pkcs11Uri()
    assert parse_pkcs11_uri("pkcs11:?") == Pkcs11Uri()
    assert parse_pkcs11_uri("pkcs11:?module-path=/m.so") == Pkcs11Uri(module_path="/m.so")


def test_percent_decoding_and_utf8() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=My%20Token;object=cl%C3%A9%3B%3F%25;id=%2a")
    assert uri.token == "My Token"
    assert uri.object == "clé;?%"
    assert uri.id == b"*"


def test_plus_and_reserved_characters_are_literal() -> None:
    uri = parse_pkcs11_uri("pkcs11:object=a+b=c&d:e@f!$'()*,[]?pin-source=file:/a/b?c|d")
    assert uri.object == "a+b=c&d:e@f!$'()*,[]"
    assert uri.pin_source == "file:/a/b?c|d"


def test_scheme_names_and_type_are_case_insensitive() -> None:
    uri = parse_pkcs11_uri("PKCS11:Token=A;TYPE=Private?Module-Path=/m.so")
    assert uri == Pkcs11Uri(token="A", type="private", module_path="/m.so")


def test_library_version_without_minor() -> None:
    assert parse_pkcs11_uri("pkcs11:library-version=3").library_version == (3, 0)


def test_unknown_attributes_are_kept() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=a;x-vendor=1%202;x-vendor=3?x-q=%ff&x-q=")
    assert uri.token == "a"
    assert uri.vendor_path == (("x-vendor", b"1 2"), ("x-vendor", b"3"))
    assert uri.vendor_query == (("x-q", b"\xff"), ("x-q", b""))


def test_empty_values_are_allowed_where_the_grammar_allows_them() -> None:
    assert parse_pkcs11_uri("pkcs11:object=;id=") == Pkcs11Uri(object="", id=b"")


def test_pin_value_is_not_in_repr_nor_display() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=t;object=k?pin-value=hunter2&module-path=/m.so")
    assert "hunter2" not in repr(uri)
    assert uri.display() == "pkcs11:token=t;object=k?module-path=/m.so"
    assert parse_pkcs11_uri("pkcs11:object=a%20b;id=%01%02").display() == (
        "pkcs11:object=a%20b;id=%01%02"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with 'pkcs11:'"),
        ("pkcs11", "must start with 'pkcs11:'"),
        ("http://example.com/", "must start with 'pkcs11:'"),
        ("pkcs11:token=a;;object=b", r"empty path attribute \(#2\)"),
        ("pkcs11:token=a;", r"empty path attribute \(#2\)"),
        ("pkcs11:;token=a", r"empty path attribute \(#1\)"),
        ("pkcs11:?pin-value=1&&module-path=/m", r"empty query attribute \(#2\)"),
        ("pkcs11:token", "path attribute #1 has no '='"),
        ("pkcs11:?module-path", "query attribute #1 has no '='"),
        ("pkcs11:=a", "invalid name"),
        ("pkcs11:to.ken=a", "invalid name"),
        ("pkcs11:token=a b", "'token' has a character that must be percent-encoded"),
        ("pkcs11:object=a/b", "'object' has a character that must be percent-encoded"),
        ("pkcs11:object=é", "'object' has a character that must be percent-encoded"),
        ("pkcs11:?pin-source=a;b", "'pin-source' has a character"),
        ("pkcs11:token=a#frag", "fragment"),
        ("pkcs11:token=%", "'token' has a malformed %-escape"),
        ("pkcs11:token=%4", "'token' has a malformed %-escape"),
        ("pkcs11:token=%zz", "'token' has a malformed %-escape"),
        ("pkcs11:token=%+1", "'token' has a malformed %-escape"),
        ("pkcs11:token=%ff", "'token' is not valid UTF-8"),
        ("pkcs11:type=key", "'type' must be one of cert, data, private, public, secret-key"),
        ("pkcs11:slot-id=", "'slot-id' must be a decimal number"),
        ("pkcs11:slot-id=-1", "'slot-id' must be a decimal number"),
        ("pkcs11:slot-id=%31", "'slot-id' must be a decimal number"),
        ("pkcs11:slot-id=" + "9" * 21, "'slot-id' must be a decimal number"),
        ("pkcs11:library-version=1.", "'library-version' must be a decimal number"),
        ("pkcs11:library-version=a.1", "'library-version' must be a decimal number"),
        ("pkcs11:token=a;token=b", "'token' appears more than once"),
        ("pkcs11:id=%01;ID=%02", "'id' appears more than once"),
        ("pkcs11:?module-path=/a&module-path=/b", "'module-path' appears more than once"),
        ("pkcs11:?pin-source=file:/p&pin-value=1", "both 'pin-source' and 'pin-value'"),
        ("pkcs11:?token=a", "'token' belongs in the path"),
        ("pkcs11:pin-value=1234", "'pin-value' belongs in the query"),
        ("pkcs11:token=" + "a" * MAX_URI_LENGTH, "longer than"),
    ],
)
def test_rejects_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pkcs11_uri(text)


def test_rejects_a_non_string() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_pkcs11_uri(b"pkcs11:token=a")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "pkcs11:token=a?pin-value=%zzsecret",
        "pkcs11:token=a?pin-value=sec ret",
        "pkcs11:token=a?pin-value=%ffsecret",
        "pkcs11:token=a?pin-value=secret&pin-value=secret",
        "pkcs11:pin-value=secret",
    ],
)
def test_errors_never_echo_values(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_pkcs11_uri(text)
    assert "secret" not in str(caught.value)


# ----- properties -------------------------------------------------------------------------

_URI_CHARS = st.sampled_from(list("pkcs11:;?&=%/#+ aAzZ09-._~*é\x00") + ["%2", "%zz", "%C3%A9"])


@given(st.text())
def test_parse_raises_only_value_error_on_any_text(text: str) -> None:
    try:
        result = parse_pkcs11_uri(text)
    except ValueError:
        return
    assert isinstance(result, Pkcs11Uri)


@given(st.lists(_URI_CHARS, max_size=60).map("".join))
def test_parse_raises_only_value_error_on_uri_like_text(body: str) -> None:
    try:
        result = parse_pkcs11_uri("pkcs11:" + body)
    except ValueError:
        return
    assert isinstance(result, Pkcs11Uri)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)


@given(
    token=_TEXT,
    obj=_TEXT,
    key_id=st.binary(max_size=16),
    slot_id=st.integers(min_value=0, max_value=2**64 - 1),
    pin=_TEXT,
    module=_TEXT,
)
def test_percent_encoded_values_round_trip(
    token: str, obj: str, key_id: bytes, slot_id: int, pin: str, module: str
) -> None:
    text = (
        f"pkcs11:token={quote(token, safe='')};object={quote(obj, safe='')}"
        f";id={quote(key_id, safe='')};slot-id={slot_id}"
        f"?pin-value={quote(pin, safe='')}&module-path={quote(module, safe='/')}"
    )
    assert parse_pkcs11_uri(text) == Pkcs11Uri(
        token=token, object=obj, id=key_id, slot_id=slot_id, pin_value=pin, module_path=module
    )
