"""Reading credentials out of a request head, and the head edits `authenticate` makes.

The parsers here take what a client sent and nothing else, so each is bounded and returns None
for anything it does not accept (the caller refuses with 401): `Authorization` per RFC 9110
11.6.2 (`scheme token68`), Basic per RFC 7617 (base64 of `user:password`, UTF-8).
"""

from __future__ import annotations

import binascii
import re
from functools import lru_cache
from typing import Final

from outwork.filters.header_lines import LineRemoval
from outwork.http.messages import RequestHead

# Bytes of one credential header value: a JWT with many claims is a few KiB; a bigger one is
# refused before it is decoded, base64 or JSON.
MAX_CREDENTIAL: Final = 8192
_SCHEME: Final = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # a token (RFC 9110 5.6.2)
_TOKEN68: Final = re.compile(rb"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 9110 11.2
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE: Final = re.compile(rb"[^\x21-\x24\x26-\x7e]")  # what identity_value percent-encodes


def header_values(head: RequestHead, name: bytes) -> list[bytes]:
    """Every value of the header `name` (lower case), in order."""
    size = len(name)  # a name of another length is not lower-cased
    return [value for key, value in head.headers if len(key) == size and key.lower() == name]


def parse_authorization(value: bytes) -> tuple[bytes, bytes] | None:
    """(`scheme` lower-cased, its token68) of an Authorization value, None if malformed."""
    if len(value) > MAX_CREDENTIAL:
        return None
    scheme, _, rest = value.strip(b" \t").partition(b" ")
    rest = rest.strip(b" \t")
    if not _SCHEME.match(scheme) or not _TOKEN68.match(rest):
        return None
    return scheme.lower(), rest


def parse_basic(token: bytes) -> tuple[str, str] | None:
    """(user, password) of a Basic token68, None if it is not base64 of UTF-8 `user:password`
    without control characters (RFC 7617 2: a user name has no colon)."""
    try:
        decoded = binascii.a2b_base64(token, strict_mode=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = text.partition(":")
    if not colon or not user or _CONTROL.search(text):
        return None
    return user, password


@lru_cache(maxsize=4096)  # the same few identities on most requests; a pure function
def identity_value(kind: str, subject: str) -> bytes:
    """`kind:subject` as a header value: every byte outside visible ASCII, and `%` itself, is
    percent-encoded, so a JWT `sub` with CR LF (or anything) cannot add a header upstream."""
    raw = f"{kind}:{subject}".encode()
    if not _UNSAFE.search(raw):
        return raw
    return b"".join(
        bytes((byte,)) if 0x21 <= byte <= 0x7E and byte != 0x25 else b"%%%02X" % byte
        for byte in raw
    )


def edit_head(
    head: RequestHead, remove: LineRemoval | frozenset[bytes], name: bytes, value: bytes
) -> None:
    """Remove every header named in `remove` (lower case) from what goes upstream (`block`,
    and the gateway's `stamped` lines when one is named) and from `headers` (what later steps
    read), then add the header `name: value` (a token and a visible-ASCII value:
    `identity_value`'s) to `block` and `headers`."""
    if not isinstance(remove, LineRemoval):
        remove = LineRemoval(remove)
    names, sizes = remove.names, remove.sizes
    head.block = b"".join((remove.block(head.block), name, b": ", value, b"\r\n"))
    if remove.stamped and head.stamped:
        head.stamped = remove.block(head.stamped)  # a name no method should use, but named
    # The kept headers' own tuples: compiled code would unpack and build each anew.
    headers = [
        header
        for header in head.headers
        if len(header[0]) not in sizes or header[0].lower() not in names
    ]
    headers.append((name, value))
    head.headers = headers
