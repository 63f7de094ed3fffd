"""SecLang transformations (`t:...`) with ModSecurity's semantics, on bytes.

Each one follows ModSecurity 2.9's C code (apache2/re_tfns.c, msc_util.c) byte for byte where
CRS depends on it; where ModSecurity v2 and v3 differ the choice is written at the function.
The tests replay the vectors of ModSecurity's own test suite
(owasp-modsecurity/secrules-language-tests, transformations/*.json).

Speed: a request runs each (variable, pipeline) once, and most values hold nothing to decode,
so every decoder first looks for its escape byte (C speed) and returns the value unchanged
when there is none; the decoding itself is one `re.sub` over the escapes, not a Python loop
over every byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from urllib.parse import unquote_to_bytes

Transform = Callable[[bytes], bytes]

# C's isspace() in the "C" locale, which ModSecurity's whitespace handling uses.
C_SPACE = b" \t\n\v\f\r"
NBSP = 0xA0
LONG_MAX = (1 << 63) - 1  # strtol() saturates here; ModSecurity keeps the low byte


def lowercase(value: bytes) -> bytes:
    return value.lower()  # ASCII only, as tolower() in the C locale


def uppercase(value: bytes) -> bytes:
    return value.upper()


def length(value: bytes) -> bytes:
    return str(len(value)).encode()


def sha1(value: bytes) -> bytes:
    return hashlib.sha1(value).digest()  # the raw digest, as ModSecurity


def md5(value: bytes) -> bytes:
    return hashlib.md5(value).digest()


def hex_encode(value: bytes) -> bytes:
    return value.hex().encode()


def trim(value: bytes) -> bytes:
    return value.strip(C_SPACE)


def trim_left(value: bytes) -> bytes:
    return value.lstrip(C_SPACE)


def trim_right(value: bytes) -> bytes:
    return value.rstrip(C_SPACE)


def remove_nulls(value: bytes) -> bytes:
    return value.replace(b"\0", b"")


def replace_nulls(value: bytes) -> bytes:
    return value.replace(b"\0", b" ")


_WHITESPACE = b"\t\n\v\f\r\xa0"
_TO_SPACE = bytes.maketrans(_WHITESPACE, b" " * len(_WHITESPACE))
_SPACE_RUN = re.compile(rb"  +")


def compress_whitespace(value: bytes) -> bytes:
    """Every run of C whitespace or NBSP becomes one space. (Mapped to spaces first, in C,
    so only the rare runs of two or more cost a Python step.)"""
    return _SPACE_RUN.sub(b" ", value.translate(_TO_SPACE))


def remove_whitespace(value: bytes) -> bytes:
    return value.translate(None, _WHITESPACE + b" ")


# --- URL decoding ------------------------------------------------------------------------


def _best_fit_ascii() -> dict[int, int]:
    """Unicode code point -> ASCII byte, in the spirit of the codepage 20127 "best fit"
    table that ModSecurity loads with `SecUnicodeMapFile unicode.mapping 20127` (the
    recommended setup CRS is tested with): accented Latin letters lose their accent,
    typographic quotes and dashes become their ASCII kin. Built from Unicode's own
    decompositions plus the punctuation the table folds; a code point absent here falls
    back to ModSecurity's no-map rule (the low byte of %uXXXX)."""
    table: dict[int, int] = {}
    for code in range(0xA0, 0x2000):
        decomposed = unicodedata.normalize("NFKD", chr(code))
        first = decomposed[:1]
        if first and first.isascii() and (first.isalnum() or code == NBSP):
            table[code] = ord(first)
    # Latin-1 signs the table folds (ModSecurity's test of %u00a0-%u00ff lists them).
    latin1 = {
        0xA0: " ", 0xA1: "!", 0xA2: "c", 0xA4: "$", 0xA5: "Y", 0xA6: "|", 0xA9: "C",
        0xAA: "a", 0xAB: "<", 0xAD: "-", 0xAE: "R", 0xB2: "2", 0xB3: "3", 0xB7: ".",
        0xB8: ",", 0xB9: "1", 0xBA: "o", 0xBB: ">", 0xC6: "A", 0xD0: "D", 0xD8: "O",
        0xE6: "a", 0xF8: "o",
    }  # fmt: skip
    for code in range(0xA0, 0x100):
        table.pop(code, None)
    for code in range(0xC0, 0x100):
        decomposed = unicodedata.normalize("NFKD", chr(code))[:1]
        if decomposed.isascii() and decomposed.isalpha():
            table[code] = ord(decomposed)
    table.update({code: ord(char) for code, char in latin1.items()})
    punctuation = {
        "-": (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212),
        "'": (0x2018, 0x2019, 0x201A, 0x2032, 0x2035),
        '"': (0x201C, 0x201D, 0x201E, 0x2033),
        ".": (0x2022, 0x2024, 0x2026),
        "<": (0x2039,),
        ">": (0x203A,),
        " ": (0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009),
    }
    # Latin letters with a stroke or bar, which Unicode does not decompose.
    for code, char in {
        0x0110: "D", 0x0111: "d", 0x0126: "H", 0x0127: "h", 0x0131: "i", 0x0141: "L",
        0x0142: "l", 0x0152: "O", 0x0153: "o", 0x0166: "T", 0x0167: "t", 0x0180: "b",
        0x0189: "D", 0x0191: "F", 0x0192: "f", 0x0197: "I", 0x019A: "l", 0x019F: "O",
        0x01AB: "t", 0x01AE: "T", 0x01B6: "z",
    }.items():  # fmt: skip
        table[code] = ord(char)
    for char, codes in punctuation.items():
        for code in codes:
            table[code] = ord(char)
    return table


BEST_FIT = _best_fit_ascii()


def _unicode_escape_byte(hex4: bytes) -> int:
    """%uXXXX (or \\uXXXX) as ModSecurity keeps it: the best-fit ASCII byte when there is
    one, else the low byte, with full-width ASCII (U+FF01-U+FF5E) moved back to ASCII."""
    code = int(hex4, 16)
    fitted = BEST_FIT.get(code)
    if fitted is not None:
        return fitted
    low = code & 0xFF
    if 0 < low < 0x5F and hex4[:2] in (b"ff", b"fF", b"Ff", b"FF"):
        low += 0x20
    return low


_URL_ESCAPE_UNI = re.compile(rb"%[uU]([0-9A-Fa-f]{4})|%([0-9A-Fa-f]{2})|\+")


def url_decode(value: bytes) -> bytes:
    """%XX and '+'; an invalid or cut escape stays as it is (ModSecurity's non-strict
    decoder)."""
    if b"%" not in value:
        return value.replace(b"+", b" ")
    # One pass, as ModSecurity: '+' first is the same (a decoded %2B stays '+'), and
    # unquote_to_bytes decodes %XX exactly as the non-strict decoder (faster than re.sub).
    return unquote_to_bytes(value.replace(b"+", b" "))


def _url_escape_uni(match: re.Match[bytes]) -> bytes:
    hex4, hex2 = match.group(1), match.group(2)
    if hex4 is not None:
        return bytes((_unicode_escape_byte(hex4),))
    if hex2 is not None:
        return bytes((int(hex2, 16),))
    return b" "


def url_decode_uni(value: bytes) -> bytes:
    """urlDecode plus IIS's %uXXXX."""
    if b"%u" not in value and b"%U" not in value:
        return url_decode(value)
    return _URL_ESCAPE_UNI.sub(_url_escape_uni, value)


_URL_KEEP = frozenset(b"*0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def url_encode(value: bytes) -> bytes:
    """ModSecurity keeps letters, digits and '*', writes space as '+', the rest %xx."""
    out = bytearray()
    for byte in value:
        if byte in _URL_KEEP:
            out.append(byte)
        elif byte == 0x20:
            out.append(0x2B)
        else:
            out += b"%%%02x" % byte
    return bytes(out)


# --- HTML, JavaScript, CSS, C escapes ----------------------------------------------------

_HTML_ENTITY = re.compile(rb"&(?:#[xX]([0-9A-Fa-f]+);?|#([0-9]+);?|([A-Za-z0-9]+);?)")
_HTML_NAMED = {b"quot": b'"', b"amp": b"&", b"lt": b"<", b"gt": b">", b"nbsp": b"\xa0"}


def _strtol_low_byte(digits: bytes, base: int) -> int:
    """strtol() then a cast to unsigned char: saturating at LONG_MAX (and never asking
    Python to parse thousands of digits)."""
    digits = digits.lstrip(b"0") or b"0"
    if len(digits) > 20:
        return LONG_MAX & 0xFF
    return min(int(digits, base), LONG_MAX) & 0xFF


def _html_entity(match: re.Match[bytes]) -> bytes:
    hex_digits, dec_digits, name = match.groups()
    if hex_digits is not None:
        return bytes((_strtol_low_byte(hex_digits, 16),))
    if dec_digits is not None:
        return bytes((_strtol_low_byte(dec_digits, 10),))
    assert name is not None
    decoded = _HTML_NAMED.get(name.lower())
    return decoded if decoded is not None else match.group(0)


def html_entity_decode(value: bytes) -> bytes:
    """&#xHH; &#DDD; (the ';' optional) and the five named entities ModSecurity knows
    (quot, amp, lt, gt, nbsp); numbers keep their low byte."""
    if b"&" not in value:
        return value
    return _HTML_ENTITY.sub(_html_entity, value)


_JS_ESCAPE = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2})|([0-7]{1,3})|(.))", re.S)
_C_LETTER = {b"a": b"\a", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}
_C_LETTER[b"v"] = b"\v"


def _js_escape(match: re.Match[bytes]) -> bytes:
    hex4, hex2, octal, other = match.groups()
    if hex4 is not None:
        return bytes((_unicode_escape_byte_js(hex4),))
    if hex2 is not None:
        return bytes((int(hex2, 16),))
    if octal is not None:
        # Three digits only while the value fits a byte (\400 is \40 then '0').
        if len(octal) == 3 and octal[0] > ord("3"):
            return bytes((int(octal[:2], 8),)) + octal[2:]
        return bytes((int(octal, 8),))
    assert other is not None
    return _C_LETTER.get(other, other)


def _unicode_escape_byte_js(hex4: bytes) -> int:
    """jsDecode's \\uXXXX keeps the low byte (no best-fit table, unlike urlDecodeUni)."""
    low = int(hex4[2:], 16)
    if 0 < low < 0x5F and hex4[:2] in (b"ff", b"fF", b"Ff", b"FF"):
        low += 0x20
    return low


def js_decode(value: bytes) -> bytes:
    """\\uHHHH, \\xHH, \\OOO, \\C; a lone trailing backslash stays."""
    if b"\\" not in value:
        return value
    return _JS_ESCAPE.sub(_js_escape, value)


_CSS_ESCAPE = re.compile(rb"\\(?:([0-9A-Fa-f]{1,6})[ \t\n\v\f\r]?|\n|(.)|\Z)", re.S)


def _css_escape(match: re.Match[bytes]) -> bytes:
    hex_digits, other = match.groups()
    if hex_digits is not None:
        # ModSecurity keeps the last two hex digits; full-width ASCII (U+FF01-U+FF5E)
        # comes back to ASCII when the number is 4 digits (or 5-6 with leading zeros).
        digits = len(hex_digits)
        if digits == 1:
            return bytes((int(hex_digits, 16),))
        low = int(hex_digits[-2:], 16)
        full_width_check = (
            digits == 4
            or (digits == 5 and hex_digits[:1] == b"0")
            or (digits == 6 and hex_digits[:2] == b"00")
        )
        if full_width_check and 0 < low < 0x5F and hex_digits[-4:-2].lower() == b"ff":
            low += 0x20
        return bytes((low,))
    if other is not None:
        return other
    return b""  # an escaped newline, or a backslash at the very end


def css_decode(value: bytes) -> bytes:
    """CSS 2 escapes: \\H to \\HHHHHH (one following space eaten), \\newline, \\C."""
    if b"\\" not in value:
        return value
    return _CSS_ESCAPE.sub(_css_escape, value)


_ESCAPE_SEQ = re.compile(rb"\\(?:([abfnrtv\\?'\"])|[xX]([0-9A-Fa-f]{2})|([0-7]{1,3})|(.))", re.S)


def _escape_seq(match: re.Match[bytes]) -> bytes:
    letter, hex2, octal, other = match.groups()
    if letter is not None:
        return _C_LETTER.get(letter, letter)
    if hex2 is not None:
        return bytes((int(hex2, 16),))
    if octal is not None:
        return bytes((int(octal, 8) & 0xFF,))
    assert other is not None
    return other  # an unknown escape loses its backslash


def escape_seq_decode(value: bytes) -> bytes:
    """ANSI C escapes (\\n, \\xHH, \\OOO...)."""
    if b"\\" not in value:
        return value
    return _ESCAPE_SEQ.sub(_escape_seq, value)


# --- comments, command lines -------------------------------------------------------------

_C_COMMENT = re.compile(rb"/\*.*?(?:\*/|\Z)", re.S)


def replace_comments(value: bytes) -> bytes:
    """Each /* ... */ (an unterminated one runs to the end) becomes one space."""
    if b"/*" not in value:
        return value
    return _C_COMMENT.sub(b" ", value)


_COMMENT_MARKS = re.compile(rb"/\*|\*/|<!--|-->|--|#")


def remove_comments_char(value: bytes) -> bytes:
    """Only the comment marks go (/* */ <!-- --> -- #), what they enclose stays."""
    return _COMMENT_MARKS.sub(b"", value)


_COMMENT_BLOCK = re.compile(rb"/\*.*?(?:\*/|\Z)|<!--.*?(?:-->|\Z)", re.S)


def remove_comments(value: bytes) -> bytes:
    """/* */ and <!-- --> comments go with their content, and a `--` or `#` ends the
    value (SQL and shell line comments). ModSecurity v2 and v3 disagree on the corner
    cases (v2 copies a byte after a closing mark twice); this is the plain reading of their
    documentation. CRS v4 does not use it (it uses removeCommentsChar)."""
    out = bytearray()
    position = 0
    for match in re.finditer(rb"/\*|<!--|--|#", value):
        if match.start() < position:
            continue
        out += value[position : match.start()]
        mark = match.group(0)
        if mark in (b"--", b"#"):
            return bytes(out)
        closing = b"*/" if mark == b"/*" else b"-->"
        end = value.find(closing, match.end())
        if end < 0:
            return bytes(out) + b" "
        position = end + len(closing)
    out += value[position:]
    return bytes(out)


_CMD_SEPARATORS = b",;\t\r\n"
_CMD_TO_SPACE = bytes.maketrans(_CMD_SEPARATORS, b" " * len(_CMD_SEPARATORS))
_CMD_SPACE_BEFORE = re.compile(rb" (?=[/(])")


def cmd_line(value: bytes) -> bytes:
    """Windows/Unix command-line evasions undone: quotes, backslashes and carets dropped,
    runs of , ; and whitespace one space, no space before / or (, lowercase.
    ModSecurity v2 stops at a NUL byte (C string); this, as v3 and Coraza, reads the whole
    value (a NUL must not hide what follows it)."""
    value = value.translate(_CMD_TO_SPACE, b"\"'\\^")
    value = _SPACE_RUN.sub(b" ", value)
    value = _CMD_SPACE_BEFORE.sub(b"", value)
    return value.lower()


# --- paths ---------------------------------------------------------------------------------


def normalize_path(value: bytes) -> bytes:
    """Collapse //, drop ./, resolve ../ (never above the root of an absolute path; a
    relative one keeps its leading ../), keep a trailing slash. ModSecurity v2's result,
    e.g. "dir/../../foo" -> "../foo", "/a/./b/../" -> "/a/", "." -> ""."""
    if not value:
        return value
    absolute = value.startswith(b"/")
    segments: list[bytes] = []
    for segment in value.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if segments and segments[-1] != b"..":
                segments.pop()
            elif not absolute:
                segments.append(segment)
            continue
        segments.append(segment)
    result = b"/".join(segments)
    if absolute:
        result = b"/" + result
    if value.endswith(b"/") and segments:
        result += b"/"
    return result


def normalize_path_win(value: bytes) -> bytes:
    return normalize_path(value.replace(b"\\", b"/"))


# --- base64, hex, UTF-8 ----------------------------------------------------------------------

_BASE64_PREFIX = re.compile(rb"[A-Za-z0-9+/]*")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]+")


def _decode_base64_chars(chars: bytes) -> bytes:
    """Decode base64 characters with no padding; a last lone character carries no byte."""
    usable = len(chars) - (len(chars) % 4 == 1)
    chars = chars[:usable]
    return base64.b64decode(chars + b"=" * (-len(chars) % 4))


def base64_decode(value: bytes) -> bytes:
    """Decode up to the first byte that is not base64 (padding included), as APR's
    decoder that ModSecurity v2 uses."""
    match = _BASE64_PREFIX.match(value)
    return _decode_base64_chars(match.group(0) if match else b"")


def base64_decode_ext(value: bytes) -> bytes:
    """Forgiving base64: every byte outside the alphabet is skipped."""
    return _decode_base64_chars(_NOT_BASE64.sub(b"", value))


def hex_decode(value: bytes) -> bytes:
    """Pairs of hex digits to bytes. ModSecurity v2 decodes any pair without checking it;
    here a value that is not hex (or has an odd length) is kept unchanged, as v3 does."""
    try:
        return binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        return value


_SQL_HEX = re.compile(rb"0[xX]((?:[0-9A-Fa-f]{2})+)")


def sql_hex_decode(value: bytes) -> bytes:
    """MySQL hex literals (0x414243 -> ABC); an odd last digit stays."""
    if b"0x" not in value and b"0X" not in value:
        return value
    return _SQL_HEX.sub(lambda match: binascii.unhexlify(match.group(1)), value)


_NON_ASCII_RUN = re.compile(rb"[\x80-\xff]+")


def _utf8_run_to_unicode(match: re.Match[bytes]) -> bytes:
    out = bytearray()
    for char in match.group(0).decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # not UTF-8: the byte stays as it is
            out.append(code - 0xDC00)
        else:
            out += b"%%u%04x" % code
    return bytes(out)


def utf8_to_unicode(value: bytes) -> bytes:
    """Each well-formed multi-byte UTF-8 character becomes %uXXXX (lowercase hex, at least
    four digits); malformed bytes (overlong, surrogates, cut sequences) stay as they are."""
    if value.isascii():
        return value
    return _NON_ASCII_RUN.sub(_utf8_run_to_unicode, value)


TRANSFORMS: dict[str, Transform] = {
    "base64decode": base64_decode,
    "base64decodeext": base64_decode_ext,
    "cmdline": cmd_line,
    "compresswhitespace": compress_whitespace,
    "cssdecode": css_decode,
    "escapeseqdecode": escape_seq_decode,
    "hexdecode": hex_decode,
    "hexencode": hex_encode,
    "htmlentitydecode": html_entity_decode,
    "jsdecode": js_decode,
    "length": length,
    "lowercase": lowercase,
    "md5": md5,
    "normalisepath": normalize_path,
    "normalisepathwin": normalize_path_win,
    "normalizepath": normalize_path,
    "normalizepathwin": normalize_path_win,
    "removecomments": remove_comments,
    "removecommentschar": remove_comments_char,
    "removenulls": remove_nulls,
    "removewhitespace": remove_whitespace,
    "replacecomments": replace_comments,
    "replacenulls": replace_nulls,
    "sha1": sha1,
    "sqlhexdecode": sql_hex_decode,
    "trim": trim,
    "trimleft": trim_left,
    "trimright": trim_right,
    "uppercase": uppercase,
    "urldecode": url_decode,
    "urldecodeuni": url_decode_uni,
    "urlencode": url_encode,
    "utf8tounicode": utf8_to_unicode,
}


def _identity(value: bytes) -> bytes:
    return value


@lru_cache(maxsize=1024)
def _compose(names: tuple[str, ...]) -> Transform:
    steps: list[Transform] = []
    for name in names:
        if name == "none":  # SecLang: t:none drops the transformations before it
            steps.clear()
            continue
        steps.append(TRANSFORMS[name])  # KeyError: an unknown transformation
    if not steps:
        return _identity
    if len(steps) == 1:
        return steps[0]
    chain = tuple(steps)

    def run(value: bytes) -> bytes:
        for step in chain:
            value = step(value)
        return value

    return run


def pipeline(names: Sequence[str]) -> Transform:
    """The transformations `names` (SecLang names, any case) applied in order, as one
    function; built once per distinct list. Raises KeyError for an unknown name."""
    return _compose(tuple(name.lower() for name in names))
