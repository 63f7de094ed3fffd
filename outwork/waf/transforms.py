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

import binascii
import hashlib
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_to_bytes

from outwork.http.ascii import AMPERSAND, BACKSLASH, EQUALS, NUL, PERCENT, SLASH

Transform = Callable[[bytes], bytes]

# C's isspace() in the "C" locale, which ModSecurity's whitespace handling uses.
C_SPACE: Final = b" \t\n\v\f\r"
NBSP: Final = 0xA0
LONG_MAX: Final = (1 << 63) - 1  # strtol() saturates here; ModSecurity keeps the low byte


def holds(value: bytes, part: bytes) -> bool:
    """`part in value`. For a bytes `part`, CPython's `in` first tries it as an integer and
    raises and clears a TypeError (a formatted message) every time: three times the cost of
    `partition` (a one-argument method; `find` parses optional arguments) on a short value."""
    return not part or bool(value.partition(part)[1])


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


_WHITESPACE: Final = b"\t\n\v\f\r\xa0"
_TO_SPACE: Final = bytes.maketrans(_WHITESPACE, b" " * len(_WHITESPACE))
_SPACE_RUN: Final = re.compile(rb"  +")


def compress_whitespace(value: bytes) -> bytes:
    """Every run of C whitespace or NBSP becomes one space. (Mapped to spaces first, in C,
    so only the rare runs of two or more cost a Python step.)"""
    return _SPACE_RUN.sub(b" ", value.translate(_TO_SPACE))


def remove_whitespace(value: bytes) -> bytes:
    return value.translate(None, _WHITESPACE + b" ")


# --- URL decoding ------------------------------------------------------------------------


# ModSecurity's "best fit" map for codepage 20127 (US-ASCII): the line "20127 (US-ASCII)" of
# its unicode.mapping (ModSecurity 2.9.7, Apache-2.0; Debian's libapache2-mod-security2 puts it
# in /etc/modsecurity/), which the recommended setup CRS is tested with loads
# (`SecUnicodeMapFile unicode.mapping 20127`). Code point (hex) : ASCII byte (hex).
UNICODE_MAPPING_20127: Final = """
    00a0:20 00a1:21 00a2:63 00a4:24 00a5:59 00a6:7c 00a9:43 00aa:61 00ab:3c 00ad:2d 00ae:52
    00b2:32 00b3:33 00b7:2e 00b8:2c 00b9:31 00ba:6f 00bb:3e 00c0:41 00c1:41 00c2:41 00c3:41
    00c4:41 00c5:41 00c6:41 00c7:43 00c8:45 00c9:45 00ca:45 00cb:45 00cc:49 00cd:49 00ce:49
    00cf:49 00d0:44 00d1:4e 00d2:4f 00d3:4f 00d4:4f 00d5:4f 00d6:4f 00d8:4f 00d9:55 00da:55
    00db:55 00dc:55 00dd:59 00e0:61 00e1:61 00e2:61 00e3:61 00e4:61 00e5:61 00e6:61 00e7:63
    00e8:65 00e9:65 00ea:65 00eb:65 00ec:69 00ed:69 00ee:69 00ef:69 00f1:6e 00f2:6f 00f3:6f
    00f4:6f 00f5:6f 00f6:6f 00f8:6f 00f9:75 00fa:75 00fb:75 00fc:75 00fd:79 00ff:79 0100:41
    0101:61 0102:41 0103:61 0104:41 0105:61 0106:43 0107:63 0108:43 0109:63 010a:43 010b:63
    010c:43 010d:63 010e:44 010f:64 0110:44 0111:64 0112:45 0113:65 0114:45 0115:65 0116:45
    0117:65 0118:45 0119:65 011a:45 011b:65 011c:47 011d:67 011e:47 011f:67 0120:47 0121:67
    0122:47 0123:67 0124:48 0125:68 0126:48 0127:68 0128:49 0129:69 012a:49 012b:69 012c:49
    012d:69 012e:49 012f:69 0130:49 0131:69 0134:4a 0135:6a 0136:4b 0137:6b 0139:4c 013a:6c
    013b:4c 013c:6c 013d:4c 013e:6c 0141:4c 0142:6c 0143:4e 0144:6e 0145:4e 0146:6e 0147:4e
    0148:6e 014c:4f 014d:6f 014e:4f 014f:6f 0150:4f 0151:6f 0152:4f 0153:6f 0154:52 0155:72
    0156:52 0157:72 0158:52 0159:72 015a:53 015b:73 015c:53 015d:73 015e:53 015f:73 0160:53
    0161:73 0162:54 0163:74 0164:54 0165:74 0166:54 0167:74 0168:55 0169:75 016a:55 016b:75
    016c:55 016d:75 016e:55 016f:75 0170:55 0171:75 0172:55 0173:75 0174:57 0175:77 0176:59
    0177:79 0178:59 0179:5a 017b:5a 017c:7a 017d:5a 017e:7a 0180:62 0189:44 0191:46 0192:66
    0197:49 019a:6c 019f:4f 01a0:4f 01a1:6f 01ab:74 01ae:54 01af:55 01b0:75 01b6:7a 01cd:41
    01ce:61 01cf:49 01d0:69 01d1:4f 01d2:6f 01d3:55 01d4:75 01d5:55 01d6:75 01d7:55 01d8:75
    01d9:55 01da:75 01db:55 01dc:75 01de:41 01df:61 01e4:47 01e5:67 01e6:47 01e7:67 01e8:4b
    01e9:6b 01ea:4f 01eb:6f 01ec:4f 01ed:6f 01f0:6a 0261:67 02b9:27 02ba:22 02bc:27 02c4:5e
    02c6:5e 02c8:27 02cb:60 02cd:5f 02dc:7e 0300:60 0302:5e 0303:7e 030e:22 0331:5f 0332:5f
    2000:20 2001:20 2002:20 2003:20 2004:20 2005:20 2006:20 2010:2d 2011:2d 2013:2d 2014:2d
    2018:27 2019:27 201a:2c 201c:22 201d:22 201e:22 2022:2e 2026:2e 2032:27 2035:60 2039:3c
    203a:3e 2122:54 ff01:21 ff02:22 ff03:23 ff04:24 ff05:25 ff06:26 ff07:27 ff08:28 ff09:29
    ff0a:2a ff0b:2b ff0c:2c ff0d:2d ff0e:2e ff0f:2f ff10:30 ff11:31 ff12:32 ff13:33 ff14:34
    ff15:35 ff16:36 ff17:37 ff18:38 ff19:39 ff1a:3a ff1b:3b ff1c:3c ff1d:3d ff1e:3e ff20:40
    ff21:41 ff22:42 ff23:43 ff24:44 ff25:45 ff26:46 ff27:47 ff28:48 ff29:49 ff2a:4a ff2b:4b
    ff2c:4c ff2d:4d ff2e:4e ff2f:4f ff30:50 ff31:51 ff32:52 ff33:53 ff34:54 ff35:55 ff36:56
    ff37:57 ff38:58 ff39:59 ff3a:5a ff3b:5b ff3c:5c ff3d:5d ff3e:5e ff3f:5f ff40:60 ff41:61
    ff42:62 ff43:63 ff44:64 ff45:65 ff46:66 ff47:67 ff48:68 ff49:69 ff4a:6a ff4b:6b ff4c:6c
    ff4d:6d ff4e:6e ff4f:6f ff50:70 ff51:71 ff52:72 ff53:73 ff54:74 ff55:75 ff56:76 ff57:77
    ff58:78 ff59:79 ff5a:7a ff5b:7b ff5c:7c ff5d:7d ff5e:7e
"""


def _best_fit_ascii() -> dict[int, int]:
    table: dict[int, int] = {}
    for entry in UNICODE_MAPPING_20127.split():
        code, _, byte = entry.partition(":")
        table[int(code, 16)] = int(byte, 16)
    return table


BEST_FIT: Final = _best_fit_ascii()


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


_URL_ESCAPE_UNI: Final = re.compile(rb"%[uU]([0-9A-Fa-f]{4})|%([0-9A-Fa-f]{2})|\+")


def url_decode(value: bytes) -> bytes:
    """%XX and '+'; an invalid or cut escape stays as it is (ModSecurity's non-strict
    decoder)."""
    if PERCENT not in value:
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
    # No '%' (most values): no %u either, and one byte test rules it out where the two
    # searches for it were generic method calls.
    if PERCENT not in value or (not holds(value, b"%u") and not holds(value, b"%U")):
        return url_decode(value)
    return _URL_ESCAPE_UNI.sub(_url_escape_uni, value)


_URL_KEEP: Final = frozenset(b"*0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


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

_HTML_ENTITY: Final = re.compile(rb"&(?:#[xX]([0-9A-Fa-f]+);?|#([0-9]+);?|([A-Za-z0-9]+);?)")
_HTML_NAMED: Final = {b"quot": b'"', b"amp": b"&", b"lt": b"<", b"gt": b">", b"nbsp": b"\xa0"}


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
    if AMPERSAND not in value:
        return value
    return _HTML_ENTITY.sub(_html_entity, value)


_JS_ESCAPE: Final = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2})|([0-7]{1,3})|(.))", re.S)
_C_LETTER: Final = {b"a": b"\a", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}
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
    if BACKSLASH not in value:
        return value
    return _JS_ESCAPE.sub(_js_escape, value)


_CSS_ESCAPE: Final = re.compile(rb"\\(?:([0-9A-Fa-f]{1,6})[ \t\n\v\f\r]?|\n|(.)|\Z)", re.S)


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
    if BACKSLASH not in value:
        return value
    return _CSS_ESCAPE.sub(_css_escape, value)


_ESCAPE_SEQ: Final = re.compile(
    rb"\\(?:([abfnrtv\\?'\"])|[xX]([0-9A-Fa-f]{2})|([0-7]{1,3})|(.))", re.S
)


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
    if BACKSLASH not in value:
        return value
    return _ESCAPE_SEQ.sub(_escape_seq, value)


# --- comments, command lines -------------------------------------------------------------

_C_COMMENT: Final = re.compile(rb"/\*.*?(?:\*/|\Z)", re.S)


def replace_comments(value: bytes) -> bytes:
    """Each /* ... */ (an unterminated one runs to the end) becomes one space."""
    if not holds(value, b"/*"):
        return value
    return _C_COMMENT.sub(b" ", value)


_COMMENT_MARKS: Final = re.compile(rb"/\*|\*/|<!--|-->|--|#")


def remove_comments_char(value: bytes) -> bytes:
    """Only the comment marks go (/* */ <!-- --> -- #), what they enclose stays."""
    return _COMMENT_MARKS.sub(b"", value)


_COMMENT_BLOCK: Final = re.compile(rb"/\*.*?(?:\*/|\Z)|<!--.*?(?:-->|\Z)", re.S)


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


_CMD_SEPARATORS: Final = b",;\t\r\n"
_CMD_TO_SPACE: Final = bytes.maketrans(_CMD_SEPARATORS, b" " * len(_CMD_SEPARATORS))
_CMD_SPACE_BEFORE: Final = re.compile(rb" (?=[/(])")


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


DOT: Final = 0x2E
_PATH_SPECIAL: Final = re.compile(rb"[./]")
_PATH_SPECIAL_WIN: Final = re.compile(rb"[./\\]")


def _normalize_path(value: bytes, win: bool) -> bytes:
    """ModSecurity 2.9's normalize_path_inplace, step for step (its results are not a plain
    path resolution: "%u.." is "" there, as a '.' after a '.' at the end of a segment is taken
    for a back-reference; tests/waf/test_modsecurity_oracle.py holds it to ModSecurity's
    answers). One buffer, read at `src` and written at `dst` <= `src`; runs of bytes that are
    neither '/' nor '.' are copied in one step."""
    buf = bytearray(value)
    end = len(buf) - 1
    src = dst = 0
    hit_root = False
    done = False
    relative = not (buf[0] == SLASH or (win and buf[0] == BACKSLASH))
    trailing = buf[end] == SLASH or (win and buf[end] == BACKSLASH)
    special = _PATH_SPECIAL_WIN if win else _PATH_SPECIAL
    while not done and src <= end and dst <= end:
        byte = buf[src]
        if byte != SLASH and byte != DOT and not (win and byte == BACKSLASH):
            # A run of bytes that are neither separator nor dot: the loop would copy them one
            # by one, and the last one, if it ends a segment, is a regular one (hit_root off).
            found = special.search(buf, src)
            stop = found.start() if found is not None else end + 1
            size = stop - src
            if stop <= end and win and buf[stop] == BACKSLASH:
                buf[stop] = SLASH
            if (stop > end or buf[stop] == SLASH) and dst + size - 1 > 0:
                hit_root = False
            buf[dst : dst + size] = buf[src:stop]
            dst += size
            src = stop
            continue
        if win:
            if buf[src] == BACKSLASH:
                buf[src] = SLASH
            if src < end and buf[src + 1] == BACKSLASH:
                buf[src + 1] = SLASH
        if src == end:
            done = True
        normalize = done or buf[src + 1] == SLASH  # at the end of a path segment
        if normalize and not (src != end and buf[src] == SLASH) and buf[src] == DOT:
            if dst > 0 and buf[dst - 1] == DOT:  # a back-reference ".."
                if not (relative and (hit_root or dst - 2 <= 0)):
                    dst -= 3  # drop the ".." and the segment before it
                    while dst > 0 and buf[dst] != SLASH:
                        dst -= 1
                    if dst <= 0:
                        hit_root = True
                        dst = 1 if not relative and src == end else 0
                    if done:
                        break
                    src += 1
                else:  # a relative path cannot go above its start: kept
                    hit_root = True
            elif dst == 0:  # "./" at the start of a relative path
                if done:
                    break
                src += 1
            elif buf[dst - 1] == SLASH:  # "/./"
                if done:
                    break
                dst -= 1
                src += 1
        elif normalize and buf[src] != SLASH and dst > 0:
            hit_root = False  # a regular segment
        # Copy the byte; a run of slashes copies as its last one.
        if buf[src] == SLASH:
            while src < end and (buf[src + 1] == SLASH or (win and buf[src + 1] == BACKSLASH)):
                src += 1
            if relative and dst == 0:
                src += 1
                continue
        buf[dst] = buf[src]
        dst += 1
        src += 1
    if not trailing and dst > 0 and buf[dst - 1] == SLASH:
        dst -= 1
    return bytes(buf[:dst])


def normalize_path(value: bytes) -> bytes:
    """Collapse //, drop ./, resolve ../ (never above the root of an absolute path; a
    relative one keeps its leading ../), keep a trailing slash: e.g. "dir/../../foo" ->
    "../foo", "/a/./b/../" -> "/a/", "." -> "". A value with no "//", "./" and no final '.'
    is its own normal form (the C loop would copy it byte by byte)."""
    if not value or (
        not holds(value, b"//") and not holds(value, b"./") and not value.endswith(b".")
    ):
        return value
    return _normalize_path(value, win=False)


def normalize_path_win(value: bytes) -> bytes:
    """normalizePath with backslashes read as slashes (they come out as slashes)."""
    if not value:
        return value
    slashed = value.replace(b"\\", b"/")
    if b"//" not in slashed and b"./" not in slashed and not slashed.endswith(b"."):
        return slashed
    return _normalize_path(value, win=True)


# --- base64, hex, UTF-8 ----------------------------------------------------------------------

_BASE64_PREFIX: Final = re.compile(rb"[A-Za-z0-9+/]*")
_NOT_BASE64: Final = re.compile(rb"[^A-Za-z0-9+/]+")


def _decode_base64_chars(chars: bytes) -> bytes:
    """Decode base64 characters with no padding; a last lone character carries no byte."""
    usable = len(chars) - (len(chars) % 4 == 1)
    chars = chars[:usable]
    # What base64.b64decode does, without its wrapper (this runs per value and pipeline).
    return binascii.a2b_base64(chars + b"=" * (-len(chars) % 4))


def base64_decode(value: bytes) -> bytes:
    """Decode up to the first byte that is not base64 (padding included), as APR's
    decoder that ModSecurity v2 uses."""
    match = _BASE64_PREFIX.match(value)
    return _decode_base64_chars(match.group(0) if match else b"")


def base64_decode_ext(value: bytes) -> bytes:
    """Forgiving base64: every byte outside the alphabet is skipped. As ModSecurity 2.9's
    decode_base64_ext: the value ends at a NUL, and a '=' after 4n+1 characters (no byte
    can end there) makes the result empty."""
    value = value.split(b"\x00", 1)[0]
    chars = _NOT_BASE64.sub(b"", value)
    if EQUALS in value:
        counted = 0
        for piece in value.split(b"=")[:-1]:
            counted += len(_NOT_BASE64.sub(b"", piece))
            if counted % 4 == 1:
                return b""
    return _decode_base64_chars(chars)


def hex_decode(value: bytes) -> bytes:
    """Pairs of hex digits to bytes. ModSecurity v2 decodes any pair without checking it;
    here a value that is not hex (or has an odd length) is kept unchanged, as v3 does."""
    try:
        return binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        return value


_SQL_HEX: Final = re.compile(rb"0[xX]([0-9A-Fa-f]{2,})")


def _sql_hex(match: re.Match[bytes]) -> bytes:
    digits = match.group(1)
    even = len(digits) & ~1
    return binascii.unhexlify(digits[:even]) + digits[even:]


def sql_hex_decode(value: bytes) -> bytes:
    """MySQL hex literals (0x414243 -> ABC): the whole run of hex digits after 0x, in pairs,
    an odd last digit kept ("0x5c0x2e" is "\\0x2e"); the result ends at its first NUL. Both
    as in ModSecurity 2.9 (v3 differs; CRS does not use this one)."""
    value = value.split(b"\x00", 1)[0]
    if not holds(value, b"0x") and not holds(value, b"0X"):
        return value
    # ModSecurity 2.9 measures its result with strlen(): it ends at the first NUL, decoded
    # ones included.
    return _SQL_HEX.sub(_sql_hex, value).split(b"\x00", 1)[0]


_NON_ASCII_RUN: Final = re.compile(rb"[\x80-\xff]+")


def _escapes_to_unicode(escaped: bytes) -> bytes:
    """Python's escapes of non-ASCII characters (\\xe9, \\u2603, \\U0001f600, \\U0010ffff) in
    ModSecurity's %u form (printf's %x, at least four digits)."""
    return (
        escaped.replace(b"\\x", b"%u00")
        .replace(b"\\u", b"%u")
        .replace(b"\\U000", b"%u")
        .replace(b"\\U00", b"%u")
    )


def _utf8_run_to_unicode(match: re.Match[bytes]) -> bytes:
    run = match.group(0)
    try:
        # Well-formed UTF-8 (no overlong form, surrogate or cut sequence): at C speed. A
        # run of non-ASCII bytes holds no backslash of its own.
        escaped = run.decode("utf-8").encode("ascii", "backslashreplace")
    except UnicodeDecodeError:
        return _malformed_utf8_run_to_unicode(run)
    return _escapes_to_unicode(escaped)


def _malformed_utf8_run_to_unicode(run: bytes) -> bytes:
    """ModSecurity 2.9's utf8_unicode_inplace_ex over a run of non-ASCII bytes, as it
    behaves (checked against it, tests/waf/test_modsecurity_oracle.py): a lead byte with its
    continuation bytes becomes %uXXXX whatever it encodes (overlong forms too, so C0 AF is
    %u002f, '/': an old evasion decoded), and then the lead byte again when the form was
    overlong or a surrogate; a lead byte without its continuation bytes is dropped; a stray
    continuation byte, or F8-FF, stays; F5-F7 stay, and are decoded after if they can be."""
    out = bytearray()
    i = 0
    size = len(run)
    while i < size:
        lead = run[i]
        if lead < 0xC0 or lead >= 0xF8:
            out.append(lead)
            i += 1
            continue
        need = 1 if lead < 0xE0 else 2 if lead < 0xF0 else 3
        if lead >= 0xF5:  # beyond U+10FFFF: kept, before its decoding if any
            out.append(lead)
        tail = run[i + 1 : i + 1 + need]
        if len(tail) < need or any(byte & 0xC0 != 0x80 for byte in tail):
            i += 1  # dropped (F5-F7: kept above), as ModSecurity does
            continue
        code = lead & (0x1F if need == 1 else 0x0F if need == 2 else 0x07)
        for byte in tail:
            code = (code << 6) | (byte & 0x3F)
        out += b"%%u%04x" % code
        if code < (0x80, 0x800, 0x10000)[need - 1] or 0xD800 <= code <= 0xDFFF:
            out.append(lead)
        i += 1 + need
    return bytes(out)


def utf8_to_unicode(value: bytes) -> bytes:
    """Each multi-byte UTF-8 character becomes %uXXXX (lowercase hex, at least four digits),
    with ModSecurity 2.9's handling of malformed bytes (see `_utf8_run_to_unicode`); and, as
    it, NUL bytes are dropped."""
    if NUL in value:
        value = value.replace(b"\x00", b"")
    if value.isascii():
        return value
    if BACKSLASH not in value:  # no backslash of its own: the whole value at once if it can
        try:
            return _escapes_to_unicode(value.decode("utf-8").encode("ascii", "backslashreplace"))
        except UnicodeDecodeError:
            pass
    return _NON_ASCII_RUN.sub(_utf8_run_to_unicode, value)


TRANSFORMS: Final[dict[str, Transform]] = {
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
