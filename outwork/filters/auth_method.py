"""What every `authenticate` method shares: its outcome types, its options and its interface.

A method says whether its credential is present in a request (`present`); the first configured
method whose credential is present decides (`verify`), at once (an `Identity` or a `Failure`)
or later (`verify` returns None and calls `done` from the event loop: a JWKS fetch, an argon2
check in a thread).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from outwork.filters import Identity, RequestContext
from outwork.filters.headers import RESERVED as RESPONSE_RESERVED
from outwork.http.messages import RequestHead
from outwork.observe.refusals import Refusal

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


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a credential was refused: the security event's detail, never the credential."""

    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    refusal: Refusal = Refusal.UNAUTHENTICATED


Outcome = Identity | Failure
Done = Callable[[Outcome], None]


class Method:
    """One way to authenticate. Methods are built once per config and shared by every request
    of their routes; what they keep (a JWKS cache, verified passwords) is process-wide."""

    __slots__ = ("identity_header", "forward_credential")
    kind = ""
    # Headers holding the credential (lower case): removed from what goes upstream.
    credential_headers: frozenset[bytes] = frozenset()

    def __init__(self, options: MethodOptions) -> None:
        self.identity_header = options.identity_header.encode()
        self.forward_credential = options.forward_credential

    def challenge(self, failed: bool) -> bytes | None:
        """The WWW-Authenticate value offered in a 401 (`failed`: this method's credential was
        the one refused), None for a method with no HTTP challenge (mTLS)."""
        return None

    def present(self, ctx: RequestContext, head: RequestHead) -> bool:
        raise NotImplementedError

    def verify(self, ctx: RequestContext, head: RequestHead, done: Done) -> Outcome | None:
        raise NotImplementedError


def authorization_scheme(head: RequestHead) -> bytes | None:
    """The scheme of the request's first Authorization header (lower case), or None."""
    for key, value in head.headers:
        if key.lower() == b"authorization":
            return value.strip(b" \t").partition(b" ")[0].lower()
    return None
