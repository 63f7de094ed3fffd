"""The filter API (after Envoy's `envoy/http/filter.h`): what a policy step may do to an exchange.

A `Filter` sees the request head, the request body chunk by chunk, the response head and the
response body chunk by chunk; each hook returns one `Verdict`:

- `CONTINUE`: go on to the next filter (and, after the last one, on with the exchange);
- `Stop()`: park the exchange in its waiting state (`exchange_state.FILTERING_*`, reading the
  client paused) until the filter calls the `resume` callback it was given;
- `Reply(status, headers, body, refusal)`: answer now, through `local_reply`, counting the
  refusal reason (a member of the closed `Refusal` enum).

Filter types are registered by name with a msgspec schema and a build function
(`FilterType`); `compile_policy` builds each policy's chain once, at config load, and routes
hold the compiled filters (`RouteConfig.filters`), default policies first. Filters are
immutable values built from the config: per-exchange state, if a filter needs any, lives with
the exchange, never on the filter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from outwork.http.messages import RequestHead, ResponseHead
from outwork.observe.refusals import Refusal

if TYPE_CHECKING:
    from outwork.config.config import RedisConfig
    from outwork.tls.clientauth import ClientIdentity


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on."""


CONTINUE = Continue()


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
    inspects_request_body = False
    inspects_response_body = False

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


@dataclass(frozen=True, slots=True)
class PolicyEnv:
    """What a step's build may need beyond its own spec: the config's gateway-wide settings."""

    base: Path = Path(".")  # the config file's directory: relative paths (a JWKS `ca`) start here
    # `revocation.not_before` (seconds since the epoch): credentials issued before it are refused.
    revoked_before: float | None = None
    redis: RedisConfig | None = None  # the `redis:` section (rate limits with `store: redis`)


@dataclass(frozen=True, slots=True)
class FilterType:
    name: str  # the key under a policy: `policies: {NAME: {<name>: {...}}}`
    # A msgspec Struct the key's value is converted to (strictly; every problem on its line,
    # unknown keys with "did you mean"). Fields may be typed with outwork.config.values' Rate,
    # Cidr and Secret (`10/s`, `10.0.0.0/8`, `env:NAME`), checked and read at load.
    schema: type[Any]
    build: Callable[[Any], Filter]  # from the converted spec to the filter
    # Used instead of `build` when set, for steps that need the gateway-wide settings; a
    # ValueError it raises is a config problem at the step's key.
    build_in_env: Callable[[Any, PolicyEnv], Filter] | None = None


REGISTRY: dict[str, FilterType] = {}  # in chain order
# The order a chain runs the policy steps in (steps.py says why), whichever module happens to be
# imported first (a test or a tool may import one step before steps.py); a type not named here
# runs after these, in the order it was registered.
CHAIN_ORDER = (
    "access",
    "headers",
    "authenticate",
    "authorize",
    "rate_limit",
    "threat_protection",
    "waf",
)


def _chain_rank(filter_type: FilterType) -> int:
    name = filter_type.name
    return CHAIN_ORDER.index(name) if name in CHAIN_ORDER else len(CHAIN_ORDER)


def register(filter_type: FilterType) -> FilterType:
    if filter_type.name in REGISTRY:
        raise ValueError(f"filter type {filter_type.name!r} registered twice")
    REGISTRY[filter_type.name] = filter_type
    ordered = sorted(REGISTRY.values(), key=_chain_rank)  # stable: the others keep their order
    REGISTRY.clear()
    REGISTRY.update((t.name, t) for t in ordered)
    return filter_type
