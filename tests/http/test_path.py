"""Request path normalisation (`outwork.http.path`) and Host/:authority syntax
(`checks.valid_host`): cases, and hypothesis properties of the normal form."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from outwork.http import path as path_module
from outwork.http.checks import valid_host
from outwork.http.errors import HTTPError
from outwork.http.path import STRICT, PathRules, normalise_path, normalise_target, route_path


def status(target: bytes, rules: PathRules = STRICT) -> int:
    with pytest.raises(HTTPError) as caught:
        normalise_target(target, rules)
    return caught.value.status


@pytest.mark.parametrize(
    ("target", "normal"),
    [
        (b"/", b"/"),
        (b"/api/v1/users?id=7", b"/api/v1/users?id=7"),
        (b"/%61dmin", b"/admin"),
        (b"//admin", b"/admin"),
        (b"///admin//x/", b"/admin/x/"),
        (b"/secre%74", b"/secret"),
        (b"/public/../admin", b"/admin"),
        (b"/public/%2e%2E/admin", b"/admin"),
        (b"/../../admin", b"/admin"),  # never above the root
        (b"/a/b/..", b"/a/"),
        (b"/a/.", b"/a/"),
        (b"/.well-known/x", b"/.well-known/x"),
        (b"/a..b/c.", b"/a..b/c."),
        (b"/a%3fb%23c%25", b"/a%3Fb%23c%25"),  # reserved escapes stay escaped (upper-case hex)
        (b"/caf%c3%a9", b"/caf%C3%A9"),  # UTF-8, kept escaped
        (b"/a?x=/../%2f%00#", b"/a?x=/../%2f%00#"),  # the query is kept byte for byte
        (b"/admin;jsessionid=1", b"/admin;jsessionid=1"),
        (b"/%2e%2e%2fadmin?%2f", None),
    ],
)
def test_normal_form(target: bytes, normal: bytes | None) -> None:
    if normal is None:
        assert status(target) == 400
    else:
        assert normalise_target(target) == normal


@pytest.mark.parametrize(
    "target",
    [
        b"/public/..%2fadmin",
        b"/public%2f..%2fadmin",
        b"/a%2Fb",
        b"/a%5cb",
        b"/a\\b",
        b"/a%00",
        b"/a%",
        b"/a%4",
        b"/a%g1",
        b"/%C0%AF",  # overlong `/`
        b"/%E0%80%AE",  # overlong `.`
        b"/%ED%A0%80",  # a UTF-16 surrogate
        b"/%C3",  # truncated
        b"/%C3/%A9",  # split by a slash
        b"/%80",  # a stray continuation byte
        b"/caf\xc3\xa9",  # raw non-ASCII
        b"/a b",
        b"/..;/admin",  # Tomcat reads `..;` as `..`
        b"/a/.;x/b",
    ],
)
def test_refused(target: bytes) -> None:
    assert status(target) == 400


def test_relaxed_rules() -> None:
    keep = PathRules(escaped_slashes="keep")
    assert normalise_target(b"/a%2fb/%5c", keep) == b"/a%2Fb/%5C"
    decode = PathRules(escaped_slashes="decode")
    assert normalise_target(b"/public%2f..%2fadmin", decode) == b"/admin"
    assert normalise_target(b"/a%5c%5cb", decode) == b"/a/b"
    no_merge = PathRules(merge_slashes=False)
    assert normalise_target(b"//a//b/../c", no_merge) == b"//a//c"
    raw = PathRules(normalize=False)
    assert normalise_target(b"/%61dmin//x", raw) == b"/%61dmin/x"
    for dots in (b"/a/../b", b"/a/%2E%2e/b", b"/a/."):
        assert status(dots, raw) == 400  # not resolved, so not forwarded either
    assert status(b"/a%00", raw) == status(b"/a\\b", raw) == status(b"/%C0%AF", raw) == 400


def test_route_path_drops_segment_parameters() -> None:
    assert route_path(b"/admin;x=1") == b"/admin"
    assert route_path(b"/a;v=1/b;c/") == b"/a/b/"
    assert route_path(b"/plain") == b"/plain"


# Properties: any visible-ASCII path, with escapes and dots made likely.

_piece = st.sampled_from(
    [b"/", b"//", b".", b"..", b"/./", b"/../", b"%2e", b"%2E", b"%2f", b"%5C", b"%61", b"%7e"]
    + [b"%41", b"%25", b"%3f", b"%c3%a9", b"%C0%AF", b"%0", b"%zz", b";", b"a", b"B", b"-", b"~"]
)
_paths = st.lists(st.one_of(_piece, st.binary(max_size=3)), max_size=12).map(
    lambda parts: b"/" + b"".join(parts)
)
_rules = st.builds(
    PathRules, st.booleans(), st.booleans(), st.sampled_from(["reject", "keep", "decode"])
)
_UNRESERVED_ESCAPE = re.compile(rb"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[DEde]|5[Ff]|7[Ee])")


@given(_paths)
def test_strict_normal_form_is_idempotent_and_clean(path: bytes) -> None:
    try:
        normal = normalise_path(path)
    except HTTPError as exc:
        assert exc.status == 400
        return
    assert normalise_path(normal) == normal
    assert normal.startswith(b"/")
    assert b"//" not in normal and b"%2F" not in normal.upper() and b"%5C" not in normal.upper()
    segments = normal.split(b"/")
    assert b"." not in segments and b".." not in segments
    assert not _UNRESERVED_ESCAPE.search(normal)  # decoded unreserved never stay escaped
    assert all(0x21 <= c <= 0x7E for c in normal) and b"\\" not in normal


@example(b"/?\x00", PathRules(normalize=False))  # `?` ended the fast path's look, NUL kept
@given(_paths, _rules)
def test_every_rule_set_is_idempotent(path: bytes, rules: PathRules) -> None:
    try:
        normal = normalise_path(path, rules)
    except HTTPError as exc:
        assert exc.status == 400
        return
    assert normalise_path(normal, rules) == normal
    assert all(0x21 <= c <= 0x7E for c in normal) and b"\x00" not in normal


@given(_paths, st.binary(max_size=20))
def test_query_is_kept(path: bytes, query: bytes) -> None:
    try:
        normal = normalise_path(path)
    except HTTPError:
        return
    assert normalise_target(path + b"?" + query) == normal + b"?" + query


# Host / :authority

_label = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789-", min_size=1, max_size=10)


@given(st.lists(_label, min_size=1, max_size=4), st.booleans(), st.none() | st.integers(0, 65535))
def test_dns_names_with_ports_are_valid_hosts(labels, dot, port) -> None:
    host = ".".join(labels) + ("." if dot else "") + (f":{port}" if port is not None else "")
    assert valid_host(host.encode())


@given(st.binary(max_size=30))
def test_valid_hosts_have_no_userinfo_path_or_space(value: bytes) -> None:
    if valid_host(value):
        assert not set(value) & set(b"@/\\ \t_%?#,;")
        assert b".." not in value and not value.startswith(b".")


@pytest.mark.parametrize(
    "value",
    [b"", b"a b", b"evil.com@x", b"x/y", b"exa_mple.com", b"a..b", b".a", b"a:", b"a:123456"]
    + [b"a:70000", b"[::1", b"::1", b"[::1]x", b"[fe80::1%25eth0]", b"a:b:c", b"a,b"],
)
def test_invalid_hosts(value: bytes) -> None:
    assert not valid_host(value)


@pytest.mark.parametrize(
    "value", [b"a", b"example.com.", b"127.0.0.1:8080", b"[::1]:8443", b"[2001:db8::1]", b"A-1"]
)
def test_valid_hosts(value: bytes) -> None:
    assert valid_host(value)


# Targets seen plain are remembered (path._PLAIN_TARGETS): the answer from memory is the one
# the match gave, whatever the rules, and the memory stays bounded.


def _outcome(target: bytes, rules: PathRules) -> bytes | int:
    try:
        return normalise_target(target, rules)
    except HTTPError as exc:
        return exc.status


@given(_paths, st.binary(max_size=20), _rules, _rules)
def test_a_remembered_target_is_answered_as_the_first_time(
    path: bytes, query: bytes, first_rules: PathRules, rules: PathRules
) -> None:
    target = path + b"?" + query
    path_module._PLAIN_TARGETS.clear()
    cold = _outcome(target, rules)
    _outcome(target, first_rules)  # remembered now, when it is plain
    assert _outcome(target, rules) == cold
    if target in path_module._PLAIN_TARGETS:
        assert cold == target


def test_remembered_targets_are_bounded() -> None:
    path_module._PLAIN_TARGETS.clear()
    for i in range(3 * path_module._PLAIN_TARGETS_MAX):
        assert normalise_target(b"/item/%d" % i) == b"/item/%d" % i
        assert len(path_module._PLAIN_TARGETS) <= path_module._PLAIN_TARGETS_MAX
    long = b"/" + b"a" * path_module._PLAIN_TARGET_LENGTH
    assert normalise_target(long) == long
    assert long not in path_module._PLAIN_TARGETS
