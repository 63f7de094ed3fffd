"""The filter API's types (outwork/filters/__init__.py describes them): the verdicts, the
identity, what a filter sees of an exchange, and `Filter`. A module of its own so that mypyc
compiles it (a compiled package `__init__` gets a wrong `__path__`); the package re-exports it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from outwork.http.messages import RequestHead, ResponseHead
from outwork.native import mypyc_attr
from outwork.observe.refusals import Refusal

if TYPE_CHECKING:
    from outwork.tls.clientauth import ClientIdentity


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on."""


CONTINUE: Final = Continue()


@dataclass(frozen=True, slots=True)
class Stop:
    """Wait: the filter calls the `resume` callback it was given when it is done."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the request now with the gateway's own response."""

    status: int
    refusal: Refusal | None = None
    # Extra response headers (lower-case names), e.g. `www-authenticate`, `retry-after`.
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None  # None: the gateway's plain-text body for `status`
    # For the security event a refusal writes (`policy.<refusal>`): what the operator needs
    # to know (which rule, which limit), never the credential itself.
    detail: dict[str, Any] = field(default_factory=dict)


Verdict = Continue | Stop | Reply
Resume = Callable[[Verdict], None]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request was authenticated as, set by `authenticate` for the steps after it
    (`authorize`, `rate_limit` by api_key or jwt_subject), the upstream header and the log."""

    kind: str  # "api_key", "jwt", "basic", "mtls"
    subject: str  # the key id, the JWT `sub`, the user name, the certificate subject
    scopes: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict)  # JWT claims; empty for the others
    owner: str = ""  # an API key's owner


class RequestContext(Protocol):
    """What a filter knows of an exchange besides its heads and body. The exchange provides
    it (`proxy.exchange.Exchange` satisfies this, checked by mypy)."""

    # Set by `authenticate`; None until then (and for routes without it).
    identity: Identity | None
    # Per-exchange state a filter keeps between its hooks, keyed by `id(filter)`: filters
    # themselves are shared by every exchange of their route and hold none.
    filter_state: dict[int, Any]

    @property
    def client_ip(self) -> str:
        """The client's address as seen after `trusted_proxies` (the first untrusted hop)."""
        ...

    @property
    def peer(self) -> str:
        """The TCP peer, `host:port`, for security events."""
        ...

    @property
    def listener_name(self) -> str: ...
    @property
    def route_name(self) -> str: ...
    @property
    def client_certificate(self) -> ClientIdentity | None:
        """The verified client certificate (mTLS), or None."""
        ...

    @property
    def now(self) -> float:
        """The gateway clock's wall time (seconds since the epoch), ticked a few times a
        second: what token expiry and rate limits are measured with."""
        ...

    def security_event(self, event: str, detail: dict[str, Any]) -> None:
        """Write a security event (rate limited, with the peer and listener filled in)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # tests, the WAF step, the bench
class Filter:
    """A step of a route's chain. Every hook continues unless a filter says otherwise.

    `inspects_request_body` tells the exchange to hand this filter the request body: while any
    filter of a route does, body chunks pass through `on_request_body` before they go
    upstream (a `Reply` there cuts the upstream request short and answers the client).

    `inspects_response_body` is its response-side twin: once the response-head hooks let a
    response pass, `response_body_limit` says how many bytes of its body the filter must see
    before anything of the response goes to the client (0: this response is not inspected and
    streams as it comes). While some filter asks for bytes, the response head is held and body
    chunks pass through `on_response_body` of the filters that inspect response bodies (`end`
    comes alone with b"", after the last chunk); a `Reply` answers the client instead, and
    nothing of the upstream's response reaches it. The chunk that passes the largest limit is
    the last one the filters see: they decide with it (a filter counts what it has seen), and
    the response then streams. Response hooks may not wait (`Stop` is a filter error)."""

    __slots__ = ()

    # Properties, not class attributes: compiled code reads a compiled class's attribute from
    # its own slot, so a subclass's `inspects_request_body = True` would go unseen; a property
    # is looked up on the subclass (tests/test_native.py holds it).
    @property
    def inspects_request_body(self) -> bool:
        return False

    @property
    def inspects_response_body(self) -> bool:
        return False

    def implements(self, hook: str) -> bool:
        """Whether this filter does anything at `hook` (a method name: "on_request_head", ...).
        A route's chain is compiled to call only the filters that do (runner.Chain), so a hook
        left as this class's costs nothing per request. By default, whether the filter's class
        overrides it; a filter whose hook does nothing with its config (no CORS, no RateLimit
        fields) may say so."""
        return getattr(type(self), hook) is not getattr(Filter, hook)

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        return CONTINUE

    def on_request_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        return CONTINUE

    def on_response_head(self, ctx: RequestContext, head: ResponseHead, resume: Resume) -> Verdict:
        return CONTINUE

    def on_response_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        return CONTINUE

    def response_body_limit(self, ctx: RequestContext, head: ResponseHead) -> int:
        """For a filter that `inspects_response_body`: the bytes of this response's body it
        must see before the response goes out (0: none, the response streams)."""
        return 0

    def on_exchange_done(self, ctx: RequestContext) -> None:
        """The exchange is over: the last byte of its response (the upstream's or the
        gateway's own answer) is handed to the client's connection. For what only reports
        (the WAF's logging phase): it runs in a later turn of the loop, so the response is
        never held up by it, and it changes nothing of the exchange. An exchange cut short
        (its client gone, its response aborted midway) does not get it."""
