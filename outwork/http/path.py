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

from outwork.http.errors import HTTPError

# What `escaped_slashes` may say: refuse, forward `%2F`/`%5C` as they are (routes see them
# escaped, and the backend must not split on them), or decode both to `/` and normalise.
ESCAPED_SLASHES = ("reject", "keep", "decode")


@dataclass(frozen=True, slots=True)
class PathRules:
    normalize: bool = True  # False: no decoding, no dot resolution (dot segments are then 400)
    merge_slashes: bool = True
    escaped_slashes: str = "reject"  # one of ESCAPED_SLASHES


STRICT = PathRules()

# A path that needs no work: `/`-separated runs of pchar without `%`, no `.`-led segment, no
# empty segment. Most requests take this one C-level match.
_PLAIN = re.compile(rb"(?:/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)*/?\Z")
# A raw byte allowed in a path: visible ASCII but `\` (and `?`/`#`, which end it before this).
_RAW = re.compile(rb"[\x21-\x5b\x5d-\x7e]*\Z")
_ESCAPE = re.compile(rb"%(.?.?)")
_HEX = re.compile(rb"[0-9A-Fa-f]{2}\Z")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SLASHES = re.compile(rb"//+")


def _bad(reason: str) -> HTTPError:
    return HTTPError(400, reason)


def _decode(path: bytes, rules: PathRules) -> bytes:
    """Check every escape; decode the unreserved ones (and slashes if asked), upper-case the
    hex of the others. Escaped non-ASCII bytes must form UTF-8, run by run."""
    out: list[bytes] = []
    high = bytearray()  # the current run of escaped bytes >= 0x80
    at = 0
    for match in _ESCAPE.finditer(path):
        begin = match.start()
        if begin > at and high:
            _check_utf8(high)
        out.append(path[at:begin])
        at = match.end()
        digits = match.group(1)
        if not _HEX.match(digits):
            raise _bad("invalid percent-encoding in the path")
        byte = int(digits, 16)
        if byte >= 0x80:
            high.append(byte)
            out.append(b"%" + digits.upper() if rules.normalize else match.group(0))
            continue
        if high:
            _check_utf8(high)
        if byte == 0:
            raise _bad("%00 in the path")
        if byte == 0x2F or byte == 0x5C:  # `/` or `\`
            if rules.escaped_slashes == "reject":
                raise _bad("escaped slash or backslash in the path")
            if rules.escaped_slashes == "decode":
                out.append(b"/")
                continue
        if rules.normalize:
            out.append(bytes((byte,)) if byte in _UNRESERVED else b"%" + digits.upper())
        else:
            out.append(match.group(0))
    if high:
        _check_utf8(high)
    out.append(path[at:])
    return b"".join(out)


def _check_utf8(run: bytearray) -> None:
    try:
        run.decode("utf-8")  # strict: refuses overlong forms, surrogates and truncated ones
    except UnicodeDecodeError:
        raise _bad("percent-encoded bytes that are not UTF-8 in the path") from None
    run.clear()


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
        elif b";" in segment and _dot(segment):
            raise _bad("a dot segment with parameters in the path")
        else:
            out.append(segment)
    return b"/" + b"/".join(out)


def normalise_path(path: bytes, rules: PathRules = STRICT) -> bytes:
    """An absolute path (no query) in normal form, or HTTPError(400)."""
    if _PLAIN.match(path):
        return path
    if not _RAW.match(path):
        raise _bad("backslash or a byte outside visible ASCII in the path")
    if b"%" in path:
        path = _decode(path, rules)
    if rules.merge_slashes and b"//" in path:
        path = _SLASHES.sub(b"/", path)
    if rules.normalize:
        return _resolve(path)
    for segment in path.split(b"/"):
        if _dot(segment.replace(b"%2e", b".").replace(b"%2E", b".")):
            raise _bad("dot segment in the path (normalize is off)")
    return path


def normalise_target(target: bytes, rules: PathRules = STRICT) -> bytes:
    """An origin-form request target (`/path?query`) with its path in normal form; the query
    is kept byte for byte."""
    q = target.find(b"?")
    if q < 0:
        return normalise_path(target, rules)
    path = target[:q]
    normal = normalise_path(path, rules)
    return target if normal is path else normal + target[q:]


def route_path(path: bytes) -> bytes:
    """The path routes compare: without the `;` parameters of its segments, which Tomcat and
    Spring drop before they dispatch (`/admin;x=1` is served as /admin). Only for matching:
    the path is forwarded with them."""
    if b";" not in path:
        return path
    return b"/".join(segment.split(b";", 1)[0] for segment in path.split(b"/"))
