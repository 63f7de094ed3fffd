"""The request path that routes match and upstreams receive: one normal form, or a 400.

A route is only a boundary if the backend reads the path the way the router did. Backends
decode `%61` to `a`, resolve `..`, merge `//` and split on `%2F` each in their own way, so the
gateway does it once, routes on the result and forwards exactly that (RFC 3986 6.2.2):

- percent-encoded unreserved characters (ALPHA DIGIT `-` `.` `_` `~`) are decoded, other
  escapes kept with upper-case hex;
- runs of `/` become one (`merge_slashes`);
- `.` and `..` segments are resolved (RFC 3986 5.2.4; `..` above the root stays at the root).

Refused (400), whatever the options, as having no single meaning across backends: an invalid
escape, `%00`, escaped bytes that are not UTF-8 (overlong forms, surrogates, stray
continuation bytes), a raw byte outside visible ASCII, a raw `\\` (a path separator to some
servers), and a `.`/`..` segment carrying `;` parameters (Tomcat resolves `..;x` as `..`).
`%2F` and `%5C` are refused unless `escaped_slashes` says otherwise. The query is kept as it
came; `#` is the HTTP/2 caller's concern (h2head) and HTTP/1.1's reader cuts the fragment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from outwork.http.ascii import BACKSLASH, NUL, PERCENT, QUESTION_MARK, SEMICOLON, SLASH
from outwork.http.errors import HTTPError

# What `escaped_slashes` may say: refuse, forward `%2F`/`%5C` as they are (routes see them
# escaped, and the backend must not split on them), or decode both to `/` and normalise.
ESCAPED_SLASHES: Final = ("reject", "keep", "decode")


@dataclass(frozen=True, slots=True)
class PathRules:
    normalize: bool = True  # False: no decoding, no dot resolution (dot segments are then 400)
    merge_slashes: bool = True
    escaped_slashes: str = "reject"  # one of ESCAPED_SLASHES
    # False: routes match paths whatever their case (Express and IIS serve /ADMIN as /admin);
    # the path is forwarded as it came.
    case_sensitive: bool = False


STRICT: Final = PathRules()

# A target whose path needs no work: `/`-separated segments of pchar without `%`, none empty
# and none starting with `.`, then the query or the end. Most requests cost this one match.
_PLAIN: Final = re.compile(
    rb"(?:/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*+)*+/?(?:\?|\Z)"
)  # possessive: a path that is not plain fails without backtracking
# A raw byte allowed in a path: visible ASCII but `\` (and `?`/`#`, which end it before this).
_RAW_BYTES: Final = bytes(b for b in range(0x21, 0x7F) if b != 0x5C)
_ESCAPE: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_SLASHES: Final = re.compile(rb"//+")


def _escape_table(normalize: bool, slashes: str) -> dict[bytes, bytes]:
    """What each escape (its two hex digits, in any case) becomes in the forwarded path."""
    table = {}
    for byte in range(256):
        upper = b"%02X" % byte
        if byte in (0x2F, 0x5C) and slashes == "decode":
            out = b"/"
        elif normalize:
            out = bytes((byte,)) if byte in _UNRESERVED else b"%" + upper
        else:
            out = b""  # as sent: filled in per spelling below
        for high in {upper[:1], upper[:1].lower()}:
            for low in {upper[1:], upper[1:].lower()}:
                table[high + low] = out or b"%" + high + low
    return table


_TABLES: Final = {
    (normalize, slashes): _escape_table(normalize, slashes)
    for normalize in (True, False)
    for slashes in ESCAPED_SLASHES
}


def _bad(reason: str) -> HTTPError:
    return HTTPError(400, reason)


def _decode(path: bytes, rules: PathRules) -> bytes:
    """Check every escape; decode the unreserved ones (and slashes if asked), upper-case the
    hex of the others. Escaped non-ASCII bytes must form UTF-8."""
    found = _ESCAPE.findall(path)
    if len(found) != path.count(b"%"):
        raise _bad("invalid percent-encoding in the path")
    escaped = bytes.fromhex(b"".join(found).decode())
    if NUL in escaped:
        raise _bad("%00 in the path")
    if rules.escaped_slashes == "reject" and (SLASH in escaped or BACKSLASH in escaped):
        raise _bad("escaped slash or backslash in the path")
    # Each `%` starts a valid escape (counted above), and what an escape is replaced with
    # never starts a new one at another place: C-level `replace` per distinct escape (a path
    # has few) instead of a Python call per escape.
    distinct = set(found)
    if not escaped.isascii():
        # Raw bytes are ASCII (checked before), so the path decoded whole is UTF-8 exactly when
        # each run of escaped bytes is (no overlong forms, surrogates or cut sequences). `%25`
        # is decoded last: the `%` it makes must not start another escape.
        decoded = path
        for digits in sorted(distinct, key=lambda d: d == b"25"):
            decoded = decoded.replace(b"%" + digits, bytes.fromhex(digits.decode()))
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("percent-encoded bytes that are not UTF-8 in the path") from None
    table = _TABLES[rules.normalize, rules.escaped_slashes]
    for digits in distinct:
        path = path.replace(b"%" + digits, table[digits])
    return path


def _dot(segment: bytes) -> bool:
    """`.` or `..`, also with `;` parameters (`..;x`)."""
    name = segment.split(b";", 1)[0]
    return name == b"." or name == b".."


def _resolve(path: bytes) -> bytes:
    """RFC 3986 5.2.4 on a path split into segments; `..` at the root stays at the root."""
    segments = path.split(b"/")
    out: list[bytes] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments[1:], 1):
        if segment == b"." or segment == b"..":
            if segment == b".." and out:
                out.pop()
            if i == last:
                out.append(b"")  # `/a/..` is `/`, `/a/.` is `/a/`
        elif SEMICOLON in segment and _dot(segment):
            raise _bad("a dot segment with parameters in the path")
        else:
            out.append(segment)
    return b"/" + b"/".join(out)


def normalise_path(path: bytes, rules: PathRules = STRICT) -> bytes:
    """An absolute path (no query) in normal form, or HTTPError(400)."""
    # `_PLAIN` stops at a `?` (it is made for targets): a `?` here is part of the path.
    return path if QUESTION_MARK not in path and _PLAIN.match(path) else _normalise(path, rules)


def _normalise(path: bytes, rules: PathRules) -> bytes:
    if path.translate(None, _RAW_BYTES):
        raise _bad("backslash or a byte outside visible ASCII in the path")
    if PERCENT in path:
        path = _decode(path, rules)
    if rules.merge_slashes and path.find(b"//") >= 0:
        path = _SLASHES.sub(b"/", path)
    if rules.normalize:
        return _resolve(path) if path.find(b"/.") >= 0 else path  # a dot segment starts with `/.`
    for segment in path.split(b"/"):
        if _dot(segment.replace(b"%2e", b".").replace(b"%2E", b".")):
            raise _bad("dot segment in the path (normalize is off)")
    return path


# Targets `_PLAIN` matched: a request for one of them costs a set lookup, not the match (about
# a tenth: the regex call alone is some 2,000 instructions, even for `/`). Targets repeat across
# requests and clients; bounded in entries and in length, and cleared when full.
_PLAIN_TARGETS: Final[set[bytes]] = set()
_PLAIN_TARGETS_MAX: Final = 256
_PLAIN_TARGET_LENGTH: Final = 512


def normalise_target(target: bytes, rules: PathRules = STRICT) -> bytes:
    """An origin-form request target (`/path?query`) with its path in normal form; the query
    is kept byte for byte."""
    if target in _PLAIN_TARGETS:
        return target
    if _PLAIN.match(target):
        if len(target) <= _PLAIN_TARGET_LENGTH:
            if len(_PLAIN_TARGETS) >= _PLAIN_TARGETS_MAX:
                _PLAIN_TARGETS.clear()
            _PLAIN_TARGETS.add(target)
        return target
    q = target.find(b"?")
    if q < 0:
        return _normalise(target, rules)
    return _normalise(target[:q], rules) + target[q:]


def route_path(path: bytes) -> bytes:
    """The path routes compare: without the `;` parameters of its segments, which Tomcat and
    Spring drop before they dispatch (`/admin;x=1` is served as /admin). Only for matching:
    the path is forwarded with them."""
    if SEMICOLON not in path:
        return path
    return b"/".join(segment.split(b";", 1)[0] for segment in path.split(b"/"))
