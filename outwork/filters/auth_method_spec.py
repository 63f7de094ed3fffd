"""What every `authenticate` method's config takes (auth_method.py has their interface):
msgspec Structs stay in an interpreted module, as mypyc drops their class keywords
(`forbid_unknown_fields`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from outwork.filters.headers_spec import RESERVED as RESPONSE_RESERVED

HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"  # RFC 9110 5.1
# A realm is sent inside a quoted-string: no quote, backslash or control character in it.
REALM = r"^[\x20\x21\x23-\x5b\x5d-\x7e]{1,128}$"
HeaderName = Annotated[str, Meta(pattern=HEADER_NAME, max_length=128)]
Realm = Annotated[str, Meta(pattern=REALM)]
DEFAULT_IDENTITY_HEADER = "X-Authenticated-Identity"


# Headers whose meaning is the gateway's (framing, routing, forwarding) or another method's:
# removing or setting them as an identity or API key header would change what the request is.
RESERVED = RESPONSE_RESERVED | {
    "authorization",
    "cookie",
    "forwarded",
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
}


def check_header(name: str, what: str) -> None:
    if name.lower() in RESERVED:
        raise ValueError(f"{what} {name!r} is a header the gateway or the request needs")


class MethodOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options every method takes."""

    # The header the identity goes upstream in (`kind:subject`); whatever a client sent under
    # this name is removed first.
    identity_header: HeaderName = DEFAULT_IDENTITY_HEADER
    # true: the credential (API key header, Authorization) goes upstream too.
    forward_credential: bool = False

    def __post_init__(self) -> None:
        check_header(self.identity_header, "identity_header")
