"""scan_response_head against the regex it had before (`^` with MULTILINE, a match tried at
every byte): it must cut the same lines and read the same values, whether the head takes the
line-by-line path (every CR and LF in a CRLF) or the LF-anchored regex (a bare CR or LF)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.http import checks
from outwork.http.errors import UpstreamProtocolError

_OLD = re.compile(
    rb"^(?:(content-length|transfer-encoding|connection|keep-alive|proxy-connection|te|trailer"
    rb"|upgrade|x-request-id):[ \t]*([^\r]*?)[ \t]*\r\n"
    rb"|[ \t])",
    re.MULTILINE,
)


def _old_scan(blob: bytes) -> tuple[bytes, list[bytes], list[bytes], list[bytes], set[bytes]]:
    """The previous implementation's cut and values (tokens of Connection before removal)."""
    pieces: list[bytes] = []
    lengths: list[bytes] = []
    codings: list[bytes] = []
    upgrade: list[bytes] = []
    connection: list[bytes] = []
    at = 0
    for match in _OLD.finditer(blob.lower()):
        name = match.group(1)
        if name is None:
            raise UpstreamProtocolError("obsolete line folding in a response header")
        begin, end = match.span()
        pieces.append(blob[at:begin])
        at = end
        if name == b"content-length":
            lengths.append(match.group(2))
        elif name == b"transfer-encoding":
            codings.append(match.group(2))
        elif name == b"upgrade":
            upgrade.append(match.group(2))
        elif name == b"connection":
            connection.append(match.group(2))
    pieces.append(blob[at:])
    return b"".join(pieces), lengths, codings, upgrade, set(connection)


_NAMES = [
    b"Content-Length",
    b"content-length",
    b"Transfer-Encoding",
    b"Connection",
    b"CONNECTION",
    b"Keep-Alive",
    b"tE",
    b"Upgradex",
    b"Proxy-Connection",
    b"TE",
    b"Trailer",
    b"Upgrade",
    b"X-Request-Id",
    b"Server",
    b"Content-Type",
    b"X-Te",
    b"Content-Length-X",
    b"Date",
]
_ALPHABET = b" \t,az09:\r\nC"  # spaces, CR and LF inside values too
_VALUE = st.binary(max_size=12).map(lambda b: bytes(_ALPHABET[x % len(_ALPHABET)] for x in b))
_LINE = st.one_of(
    st.tuples(st.sampled_from(_NAMES), st.sampled_from([b":", b": ", b":\t", b" :"]), _VALUE).map(
        lambda t: t[0] + t[1] + t[2] + b"\r\n"
    ),
    _VALUE.map(lambda v: b" " + v + b"\r\n"),  # obs-fold
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE, max_size=8))
def test_scan_response_head_cuts_what_the_multiline_regex_cut(lines: list[bytes]) -> None:
    blob = b"".join(lines)
    try:
        expected = _old_scan(blob)
    except UpstreamProtocolError:
        try:
            checks.scan_response_head(blob)
        except UpstreamProtocolError:
            return
        raise AssertionError("obs-fold no longer refused") from None
    scan = checks.scan_response_head(blob)
    block, lengths, codings, upgrade, _ = expected
    if not any(t.strip() not in (b"close", b"keep-alive", b"") for t in expected[4]):
        # Connection naming other headers removes those lines too (checked elsewhere).
        assert scan.block == block
    assert scan.lengths == lengths
    assert scan.codings == codings
    assert scan.upgrade == upgrade


_CLEAN_ALPHABET = b" \t,az09:C-"
_CLEAN_VALUE = st.binary(max_size=12).map(
    lambda b: bytes(_CLEAN_ALPHABET[x % len(_CLEAN_ALPHABET)] for x in b)
) | st.sampled_from([b"close", b"keep-alive", b"Upgrade", b"x-a, Upgrade", b"te", b""])
_CLEAN_LINE = st.one_of(
    st.tuples(
        st.sampled_from([*_NAMES, b"x-a", b"X-A", b"Upgrade:x"]),
        st.sampled_from([b":", b": ", b":\t", b" :", b"::"]),
        _CLEAN_VALUE,
    ).map(lambda t: t[0] + t[1] + t[2] + b"\r\n"),
    _CLEAN_VALUE.map(lambda v: b"\t" + v + b"\r\n"),  # obs-fold
    st.just(b"\r\n"),
)


def _outcome(scan: object, blob: bytes) -> object:
    try:
        found = scan(blob)  # type: ignore[operator]
    except UpstreamProtocolError:
        return "obs-fold"
    framing = (found.lengths, found.codings, found.upgrade, found.connection_upgrade)
    return found.block, framing


@settings(max_examples=600, deadline=None)
@given(st.lists(_CLEAN_LINE, max_size=8), st.sampled_from([b"", b"X: 1", b" x"]))
def test_the_line_path_scans_as_the_regex_path(lines: list[bytes], tail: bytes) -> None:
    """Heads with CRLF line ends only (what llhttp lets through), Connection naming other
    headers included, and a last line without CRLF: the line-by-line scan every response takes
    and the regex scan kept for irregular heads agree, block and values."""
    blob = b"".join(lines) + tail

    def by_lines(b: bytes) -> checks.HeaderScan:
        assert b.count(b"\r") == b.count(b"\n") == b.count(b"\r\n")
        return checks.scan_response_head(b)

    def by_regex(b: bytes) -> checks.HeaderScan:
        scan, tokens = checks._scan_irregular(b)
        if tokens is not None:
            checks._cut_connection_named(scan, tokens)
        return scan

    assert _outcome(by_lines, blob) == _outcome(by_regex, blob)


def test_a_typical_response_head_keeps_its_end_to_end_lines() -> None:
    blob = (
        b"Server: nginx\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n"
        b"Keep-Alive: timeout=5\r\nETag: x\r\n"
    )
    scan = checks.scan_response_head(blob)
    assert scan.block == b"Server: nginx\r\nETag: x\r\n"
    assert scan.lengths == [b"1024"]


@given(st.binary(max_size=40).map(lambda b: bytes(b"\r\na:"[x % 4] for x in b)))
def test_the_bare_cr_or_lf_test_is_the_count_of_crs_and_lfs(blob: bytes) -> None:
    """scan_response_head takes the line path when no CR or LF is left inside a line: the same
    heads as when the head holds as many CRs and LFs as its CRLFs, twice."""
    lines = blob.split(b"\r\n")
    counted = len(blob) - len(blob.translate(None, b"\r\n")) == 2 * (len(lines) - 1)
    joined = b"".join(lines)
    assert (b"\r" not in joined and b"\n" not in joined) == counted
