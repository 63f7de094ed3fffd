"""What every `authenticate` method shares: its outcome types, its options and its interface.

A method says whether its credential is present in a request (`present`); the first configured
method whose credential is present decides (`verify`), at once (an `Identity` or a `Failure`)
or later (`verify` returns None and calls `done` from the event loop: a JWKS fetch, an argon2
check in a thread).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from outwork.filters.api import Identity, RequestContext
from outwork.filters.auth_method_spec import MethodOptions
from outwork.http.messages import RequestHead
from outwork.native import mypyc_attr
from outwork.observe.refusals import Refusal


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a credential was refused: the security event's detail, never the credential."""

    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    refusal: Refusal = Refusal.UNAUTHENTICATED


Outcome = Identity | Failure
Done = Callable[[Outcome], None]


@mypyc_attr(allow_interpreted_subclasses=True)  # jwt, basic, mtls
class Method:
    """One way to authenticate. Methods are built once per config and shared by every request
    of their routes; what they keep (a JWKS cache, verified passwords) is process-wide.

    `kind` and `credential_headers` are properties, which a subclass may override with class
    attributes: compiled code would read a compiled class attribute from its own slot, never
    the subclass's."""

    __slots__ = ("identity_header", "forward_credential")

    @property
    def kind(self) -> str:
        return ""

    @property
    def credential_headers(self) -> frozenset[bytes]:
        """Headers holding the credential (lower case): removed from what goes upstream."""
        return frozenset()

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
