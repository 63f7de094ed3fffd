"""Transformations: ModSecurity's own test vectors, every one CRS uses, pipelines.

Vectors marked [msc] come from ModSecurity's test suite,
owasp-modsecurity/secrules-language-tests, transformations/<name>.json (JSON strings there
are bytes written as Latin-1 characters); [v2] ones are read off ModSecurity 2.9's C code
(apache2/re_tfns.c, msc_util.c) where the suite has no case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.waf.transforms import TRANSFORMS, holds, pipeline

CRS_OPERATORS = Path(__file__).resolve().parents[1] / "data" / "waf" / "crs-operators.json"

VECTORS: list[tuple[str, bytes, bytes]] = [
    # urlDecodeUni [msc]
    ("urlDecodeUni", b"", b""),
    ("urlDecodeUni", b"Test+Case", b"Test Case"),
    ("urlDecodeUni", b"%+", b"% "),
    ("urlDecodeUni", b"%%20", b"% "),
    ("urlDecodeUni", b"%0g%20", b"%0g "),
    ("urlDecodeUni", b"%%u0020", b"% "),
    ("urlDecodeUni", b"%u%u0020", b"%u "),
    ("urlDecodeUni", b"%u000g%u0020", b"%u000g "),
    ("urlDecodeUni", b"%0%1%2%a%f", b"%0%1%2%a%f"),
    ("urlDecodeUni", b"%", b"%"),
    ("urlDecodeUni", b"%gg", b"%gg"),
    ("urlDecodeUni", b"var%3d%20@.%3d%20%28%20SELECT", b"var= @.= ( SELECT"),
    ("urlDecodeUni", b"%uff01%uff02%uff5e", b'!"~'),
    ("urlDecodeUni", b"%uff00%uff7f%uff80%uffff", b"\x00\x7f\x80\xff"),
    ("urlDecodeUni", b"%u1100%u1141%u11ff", b"\x00\x41\xff"),
    # with the codepage 20127 best-fit map ModSecurity loads (unicode.mapping) [msc]
    ("urlDecodeUni", b"%u201cAnd he is", b'"And he is'),
    ("urlDecodeUni", b"%u201dQuoted%u2019s%u2018 word%u2014dash", b"\"Quoted's' word-dash"),
    ("urlDecodeUni", b"%u0041%u00e9%u00e8", b"Aee"),
    ("urlDecodeUni", b"%u00a0%u00a1%u00a3%u00c6%u00d7%u00ff", b" !\xa3A\xd7y"),
    # urlDecode [msc]
    ("urlDecode", b"+%00%41%7e%ff", b" \x00A~\xff"),
    ("urlDecode", b"%u0041%%41%4", b"%u0041%A%4"),
    # urlEncode [v2]
    ("urlEncode", b"a b*c/\xff", b"a+b*c%2f%ff"),
    # htmlEntityDecode [msc]
    ("htmlEntityDecode", b"Test\x00Case", b"Test\x00Case"),
    (
        "htmlEntityDecode",
        b"&#x0;&#X0;&#x20;&#X20;&#0;&#32;\x00&#100;&quot;&amp;&lt;&gt;&nbsp;",
        b'\x00\x00  \x00 \x00d"&<>\xa0',
    ),
    (
        "htmlEntityDecode",
        b"&#x0&#X0&#x20&#X20&#0&#32\x00&#100&quot&amp&lt&gt&nbsp",
        b'\x00\x00  \x00 \x00d"&<>\xa0',
    ),
    (
        "htmlEntityDecode",
        b"&#xg;&#Xg;&#xg0;&#X2g;&#a;\x00&#a2;&#3a&#a00;&#1a0;&#10a;&foo;",
        b"&#xg;&#Xg;&#xg0;\x02g;&#a;\x00&#a2;\x03a&#a00;\x01a0;\na;&foo;",
    ),
    ("htmlEntityDecode", b"&#x0000000000000000000041;&#99999999999999999999999;", b"A\xff"),
    # jsDecode [msc]
    (
        "jsDecode",
        b"\\a\\b\\f\\n\\r\\t\\v\\?\\'\\\"\\0\\12\\123\\x00\\xff",
        b"\a\b\f\n\r\t\v?'\"\x00\nS\x00\xff",
    ),
    ("jsDecode", b"\\u", b"u"),
    ("jsDecode", b"\\u\\u0\\u01\\u012\x00", b"uu0u01u012\x00"),
    ("jsDecode", b"\\", b"\\"),
    ("jsDecode", b"\\\\0", b"\\0"),
    ("jsDecode", b"<\\163\\143\\162\\151\\160\\164>", b"<script>"),
    ("jsDecode", b"\\377\\200", b"\xff\x80"),
    ("jsDecode", b"\\400", b" 0"),  # [v2] three digits only while they fit a byte
    ("jsDecode", b"\\u0041\\uff01\\u2019", b"A!\x19"),  # [v2] low byte, full width
    # cssDecode [msc]
    (
        "cssDecode",
        b"test\\a\\b\\f\\n\\r\\t\\v\\?\\'\\\"\\0\\12\\123\\1234"
        b"\\12345\\123456\\ff01\\ff5e\\\n\\0  string",
        b"test\n\x0b\x0fnrtv?'\"\x00\x12#4EV!~\x00 string",
    ),
    ("cssDecode", b"test\\", b"test"),
    ("cssDecode", b"\\1A\\1 A\\1234567\\123456 7\\1x\\1 x", b"\x1a\x01AV7V7\x01x\x01x"),
    ("cssDecode", b"\\00ff01\\0ff01\\12ff01", b"!!\x01"),  # [v2] full width checks
    # escapeSeqDecode [msc]
    (
        "escapeSeqDecode",
        b"\\a\\b\\f\\n\\r\\t\\v\\?\\'\\\"\\0\\12\\123\\x00\\xff",
        b"\a\b\f\n\r\t\v?'\"\x00\nS\x00\xff",
    ),
    ("escapeSeqDecode", b"\\8\\9\\666\\xag\\xga\\0123", b"89\xb6xagxga\n3"),
    ("escapeSeqDecode", b"\\x\\x0", b"xx0"),
    ("escapeSeqDecode", b"\\01", b"\x01"),
    ("escapeSeqDecode", b"\\", b"\\"),
    ("escapeSeqDecode", b"\\\\u0000", b"\\u0000"),
    # removeNulls / replaceNulls [msc]
    ("removeNulls", b"\x00Test\x00Case\x00", b"TestCase"),
    ("replaceNulls", b"\x00Test\x00Case\x00", b" Test Case "),
    # compressWhitespace [msc]
    ("compressWhitespace", b"Test\t\n\v\f\r \xa0Case  ", b"Test Case "),
    ("removeWhitespace", b" Test\t\n\v\f\r \xa0Case ", b"TestCase"),
    # replaceComments [msc]
    ("replaceComments", b"/* TestCase */", b" "),
    ("replaceComments", b"Before/* TestCase */After", b"Before After"),
    ("replaceComments", b"Before /* TestCase */ After", b"Before   After"),
    ("replaceComments", b"/* Test\r\nCase */", b" "),
    ("replaceComments", b"Before/* Test\r\nCase ", b"Before "),
    ("replaceComments", b"Test\r\nCase */After", b"Test\r\nCase */After"),
    # removeCommentsChar [v2]
    ("removeCommentsChar", b"a/*b*/c<!--d-->e--f#g", b"abcdefg"),
    ("removeComments", b"a/*b*/c<!--d-->e--f#g", b"ace"),
    ("removeComments", b"SELECT 1 #x\nFROM", b"SELECT 1 "),
    # cmdLine [v2]
    (
        "cmdLine",
        b'C:\\WINDOWS\\system32\\CMD.exe /c "dir" , ; ^p(x)',
        b"c:windowssystem32cmd.exe/c dir p(x)",
    ),
    ("cmdLine", b"c\"a't ; /etc/pass'wd", b"cat/etc/passwd"),
    # normalisePath [msc]
    ("normalizePath", b"", b""),
    ("normalizePath", b"/foo/bar/baz", b"/foo/bar/baz"),
    ("normalizePath", b"/foo/bar\x00/baz", b"/foo/bar\x00/baz"),
    ("normalizePath", b".", b""),
    ("normalizePath", b"./", b""),
    ("normalizePath", b"./..", b".."),
    ("normalizePath", b"./../", b"../"),
    ("normalizePath", b"../..", b"../.."),
    ("normalizePath", b"/dir/foo//bar", b"/dir/foo/bar"),
    ("normalizePath", b"dir/foo//bar/", b"dir/foo/bar/"),
    ("normalizePath", b"dir/../../foo", b"../foo"),
    ("normalizePath", b"dir/./.././../../foo/bar/.", b"../../foo/bar"),
    ("normalizePath", b"dir/./.././../../foo/bar/../", b"../../foo/"),
    ("normalizePath", b"dir//.//..//.//..//..//foo//bar//", b"../../foo/bar/"),
    ("normalizePath", b"dir/./subdir/../subsubdir/../subsubsubdir/..", b"dir"),
    ("normalizePath", b"/dir/./subdir/../subsubdir/../subsubsubdir/../", b"/dir/"),
    ("normalizePath", b"/./.././../../../../../../../\x00/../etc/./passwd", b"/etc/passwd"),
    # [v2] "//" is "/" (v3's suite keeps "//")
    ("normalizePath", b"//", b"/"),
    # normalisePathWin [msc]
    ("normalizePathWin", b"\\foo\\bar\\baz", b"/foo/bar/baz"),
    ("normalizePathWin", b"dir\\.\\..\\.\\..\\..\\foo\\bar\\..\\", b"../../foo/"),
    (
        "normalizePathWin",
        b"\\.\\..\\.\\..\\..\\..\\..\\..\\..\\..\\\\0\\..\\etc\\.\\passwd",
        b"/etc/passwd",
    ),
    # base64Decode [msc]
    ("base64Decode", b"VGVzdENhc2U=", b"TestCase"),
    ("base64Decode", b"VGVzdENhc2Ux", b"TestCase1"),
    ("base64Decode", b"VGVzdENhc2UxMg==", b"TestCase12"),
    ("base64Decode", b"VGVzdABDYXNl", b"Test\x00Case"),
    ("base64Decode", b"VGVzdENhc2U=\x00VGVzdENhc2U=", b"TestCase"),
    ("base64DecodeExt", b"VGVz.dENh\nc2U", b"TestCase"),
    # sqlHexDecode [msc]
    ("sqlHexDecode", b"0x414243", b"ABC"),
    ("sqlHexDecode", b"ABC", b"ABC"),
    ("sqlHexDecode", b"00x414243", b"0ABC"),
    ("sqlHexDecode", b"0xz0x414243", b"0xzABC"),
    # [v2] the hex run is maximal, an odd digit stays (v3's suite has "ABCCBA" for the first)
    ("sqlHexDecode", b"0x4142430x434241", b"ABC0x434241"),
    ("sqlHexDecode", b"0x4142430x0x434241", b"ABC0xCBA"),
    ("sqlHexDecode", b"0x7f000001", b"\x7f"),  # [v2] ends at a decoded NUL
    # hexDecode / hexEncode [msc]
    ("hexDecode", b"5465737443617365", b"TestCase"),
    ("hexEncode", b"TestCase\x00\xff", b"5465737443617365" + b"00ff"),
    # utf8toUnicode [msc]: each multi-byte character as %uXXXX
    ("utf8toUnicode", "Ð€ é".encode(), b"%u00d0%u20ac %u00e9"),
    ("utf8toUnicode", "☃\U0001f600".encode(), b"%u2603%u1f600"),
    # [v2] (ModSecurity 2.9.7 itself): overlong and surrogate forms decoded (and their lead
    # byte kept), a cut sequence's lead dropped, stray bytes kept, NUL dropped
    ("utf8toUnicode", b"\xc0\xaf\xed\xa0\x80\xff\x80", b"%u002f\xc0%ud800\xed\xff\x80"),
    ("utf8toUnicode", b"a\xe2\x82b\xc3", b"a\x82b"),
    ("utf8toUnicode", b"\xf5\x80\x80\x80\xf7", b"\xf5%u140000\xf7"),
    ("utf8toUnicode", b"\xf4\x90\x80\x80 a\x00b", b"%u110000 ab"),
    # case, length, trim, hashes [msc]
    ("lowercase", b"TeSt\xc4Case", b"test\xc4case"),
    ("uppercase", b"TeSt\xe4Case", b"TEST\xe4CASE"),
    ("length", b"Test\x00Case", b"9"),
    ("trim", b" \t\v\f\r\nTest Case\t ", b"Test Case"),
    ("trimLeft", b" \tTest Case ", b"Test Case "),
    ("trimRight", b" Test Case\t ", b" Test Case"),
    ("sha1", b"", bytes.fromhex("da39a3ee5e6b4b0d3255bfef95601890afd80709")),
    ("md5", b"", bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e")),
]


@pytest.mark.parametrize(("name", "value", "expected"), VECTORS)
def test_vector(name: str, value: bytes, expected: bytes) -> None:
    assert TRANSFORMS[name.lower()](value) == expected


def test_every_transformation_crs_uses_is_known() -> None:
    """CRS v4.28 uses exactly these (`t:none` is the engine's reset)."""
    used = {
        name.lower()
        for entry in json.loads(CRS_OPERATORS.read_text())
        for name in entry["transforms"]
    }
    assert used - {"none"} <= TRANSFORMS.keys()
    assert used == {
        "base64decode", "cmdline", "compresswhitespace", "cssdecode", "escapeseqdecode",
        "hexencode", "htmlentitydecode", "jsdecode", "length", "lowercase", "none",
        "normalizepath", "normalizepathwin", "removecommentschar", "removenulls",
        "removewhitespace", "replacecomments", "sha1", "urldecodeuni", "utf8tounicode",
    }  # fmt: skip


def test_pipeline_applies_in_order_and_none_resets() -> None:
    assert pipeline(["urlDecodeUni", "lowercase"])(b"%53ELECT") == b"select"
    assert pipeline(["lowercase", "none", "urlDecodeUni"])(b"A%41") == b"AA"
    assert pipeline([])(b"As Is") == b"As Is"
    assert pipeline(["LOWERCASE"])(b"X") == b"x"


def test_pipeline_is_built_once_per_list() -> None:
    assert pipeline(["urlDecodeUni", "htmlEntityDecode"]) is pipeline(
        ["urldecodeuni", "HTMLENTITYDECODE"]
    )


def test_unknown_transformation_raises_key_error() -> None:
    with pytest.raises(KeyError):
        pipeline(["lowercase", "rot13"])


# Decoders and filters: their output is never longer than their input.
SHRINKING = sorted(
    set(TRANSFORMS) - {"hexencode", "urlencode", "utf8tounicode", "length", "sha1", "md5"}
)


@given(name=st.sampled_from(sorted(TRANSFORMS)), value=st.binary(max_size=300))
def test_every_transformation_takes_any_bytes(name: str, value: bytes) -> None:
    assert isinstance(TRANSFORMS[name](value), bytes)


@given(name=st.sampled_from(SHRINKING), value=st.binary(max_size=300))
def test_decoders_never_grow_the_value(name: str, value: bytes) -> None:
    """A cut escape is copied as it is and nothing expands: a peer cannot make the WAF
    build a value bigger than what it sent."""
    assert len(TRANSFORMS[name](value)) <= len(value)


@given(value=st.binary(max_size=200))
def test_url_encode_then_decode_is_identity(value: bytes) -> None:
    assert TRANSFORMS["urldecode"](TRANSFORMS["urlencode"](value)) == value


@given(value=st.binary(max_size=200))
def test_hex_encode_then_decode_is_identity(value: bytes) -> None:
    assert TRANSFORMS["hexdecode"](TRANSFORMS["hexencode"](value)) == value


@given(text=st.text(max_size=100), backslash=st.booleans())
def test_utf8_to_unicode_of_valid_utf8(text: str, backslash: bool) -> None:
    """Each non-ASCII character as %u and its code point (at least four hex digits), NULs
    dropped; whether the value is taken whole or run by run (a backslash in it)."""
    text = "\\" + text if backslash else text
    expected = b"".join(
        b"" if char == "\0" else char.encode() if char.isascii() else b"%%u%04x" % ord(char)
        for char in text
    )
    assert TRANSFORMS["utf8tounicode"](text.encode("utf-8", "surrogatepass")) == expected


# The fast paths against a plain transcription of ModSecurity's byte loops.


def reference_url_decode(value: bytes) -> bytes:
    def escape(match: re.Match[bytes]) -> bytes:
        return bytes((int(match.group(1), 16),)) if match.group(1) else b" "

    return re.sub(rb"%([0-9A-Fa-f]{2})|\+", escape, value)


def reference_cmd_line(value: bytes) -> bytes:
    """msre_fn_cmdline_execute (ModSecurity 2.9), over the whole value."""
    out = bytearray()
    space = False
    for byte in value:
        char = bytes((byte,))
        if char in b"\"'\\^":
            continue
        if char in b" ,;\t\r\n":
            if not space:
                out += b" "
                space = True
        elif char in b"/(":
            if space:
                out.pop()
            space = False
            out += char
        else:
            out += char.lower()
            space = False
    return bytes(out)


URLISH = st.lists(
    st.sampled_from([b"%", b"%u", b"%U", b"+", b"41", b"4", b"g", b"ff01", b"2B", b"a", b" "]),
    max_size=30,
).map(b"".join)


@given(value=URLISH | st.binary(max_size=100))
def test_url_decode_matches_the_byte_loop(value: bytes) -> None:
    assert TRANSFORMS["urldecode"](value) == reference_url_decode(value)
    if b"%u" not in value.lower():
        assert TRANSFORMS["urldecodeuni"](value) == reference_url_decode(value)


@given(value=st.lists(st.sampled_from(list(b" ,;\t\r\n/(\"'\\^aB\x00")), max_size=30).map(bytes))
def test_cmd_line_matches_the_byte_loop(value: bytes) -> None:
    assert TRANSFORMS["cmdline"](value) == reference_cmd_line(value)


@given(value=st.lists(st.sampled_from(list(b" \t\n\v\f\r\xa0ab")), max_size=30).map(bytes))
def test_whitespace_transformations_match_their_definition(value: bytes) -> None:
    assert TRANSFORMS["compresswhitespace"](value) == re.sub(rb"[ \t\n\v\f\r\xa0]+", b" ", value)
    assert TRANSFORMS["removewhitespace"](value) == re.sub(rb"[ \t\n\v\f\r\xa0]+", b"", value)


@given(value=st.binary(max_size=40), part=st.binary(max_size=3))
def test_holds_is_in(value: bytes, part: bytes) -> None:
    assert holds(value, part) == (part in value)
    assert holds(value + part + value, part)
