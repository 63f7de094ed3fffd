"""`headers`: response headers removed and added (`Server` and `X-Powered-By` out, `HSTS` in),
and CORS answered at the gateway.

    policies: {baseline: {headers: {remove: [Server, X-Powered-By],
                                    add: {Strict-Transport-Security: "max-age=31536000"},
                                    cors: {origins: ["https://app.example"], methods: [GET, POST],
                                           headers: [Authorization], credentials: true}}}}

An added header replaces any the upstream sent under that name. Framing and connection headers
are the gateway's own business and refused in the config.

CORS (the Fetch standard's protocol): a preflight (OPTIONS with Origin and
Access-Control-Request-Method) is answered here, 204 with the allowed methods and headers, or
403 (`cors_rejected`) for an origin, method or requested header not allowed; the backend never
sees it. An actual request from an allowed origin gets Access-Control-Allow-Origin (the origin
itself; `*` only for `origins: ["*"]`, which cannot go with credentials) and the rest on its
response; one from another origin is forwarded and answered without them, so the browser keeps
the answer from the page. With `cors`, the gateway owns these headers: the upstream's own
`Access-Control-*` are removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from outwork.filters import FilterType, register
from outwork.filters.api import CONTINUE, Filter, Reply, RequestContext, Resume, Verdict
from outwork.filters.header_lines import LineRemoval
from outwork.filters.headers_spec import CORS_RESPONSE, CorsSpec, HeadersSpec
from outwork.http.messages import RequestHead, ResponseHead, header_values
from outwork.observe.refusals import Refusal

CORS_REQUEST: Final = frozenset(
    {b"origin", b"access-control-request-method", b"access-control-request-headers"}
)
_DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}


def _origin(text: str) -> bytes:
    """An origin as a browser serialises it: lower case, no default port."""
    origin = text.lower()
    scheme = origin.partition(":")[0]
    default = _DEFAULT_PORTS.get(scheme, "")
    if default and origin.endswith(default):
        origin = origin[: -len(default)]
    return origin.encode()


@dataclass(frozen=True, slots=True)
class Cors:
    origins: frozenset[bytes]  # empty: any origin (`*`)
    methods: frozenset[bytes]
    headers: frozenset[bytes]  # lower case
    credentials: bool
    preflight: tuple[tuple[bytes, bytes], ...]  # a preflight answer's headers but the origin
    actual: bytes  # header lines an allowed actual request's answer gets after the origin
    vary: bytes  # `Vary: Origin` on every answer when it depends on the origin

    def allows(self, origin: bytes) -> bool:
        return not self.origins or origin in self.origins

    def allow_origin(self, origin: bytes) -> bytes:
        return origin if self.origins else b"*"


def _cors_refused(reason: str, origin: bytes) -> Reply:
    detail = {"reason": reason, "origin": origin[:512].decode("latin-1")}
    return Reply(403, Refusal.CORS_REJECTED, detail=detail)


def build_cors(spec: CorsSpec) -> Cors:
    any_origin = spec.origins == ["*"]
    preflight = [
        (b"access-control-allow-methods", ", ".join(spec.methods).encode()),
        (b"access-control-max-age", str(spec.max_age).encode()),
    ]
    if spec.headers:
        preflight.append((b"access-control-allow-headers", ", ".join(spec.headers).encode()))
    actual = b""
    if spec.credentials:
        preflight.append((b"access-control-allow-credentials", b"true"))
        actual += b"Access-Control-Allow-Credentials: true\r\n"
    if spec.expose:
        actual += b"Access-Control-Expose-Headers: " + ", ".join(spec.expose).encode() + b"\r\n"
    if not any_origin:
        preflight.append((b"vary", b"Origin"))
    return Cors(
        origins=frozenset() if any_origin else frozenset(_origin(o) for o in spec.origins),
        methods=frozenset(m.encode() for m in spec.methods),
        headers=frozenset(h.lower().encode() for h in spec.headers),
        credentials=spec.credentials,
        preflight=tuple(preflight),
        actual=actual,
        vary=b"" if any_origin else b"Vary: Origin\r\n",
    )


@dataclass(frozen=True, slots=True)
class HeadersFilter(Filter):
    remove: frozenset[bytes]  # lower-case names, the added ones included (they replace)
    add: bytes  # the header lines added, each ending in CRLF
    cors: Cors | None = None
    removal: LineRemoval = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "removal", LineRemoval(self.remove))

    def implements(self, hook: str) -> bool:
        if hook == "on_request_head":
            return self.cors is not None  # only CORS reads the request
        return Filter.implements(self, hook)  # (slots dataclasses cannot use bare super())

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        cors = self.cors
        if cors is None:
            return CONTINUE
        found = header_values(head.headers, CORS_REQUEST)
        origins = found.get(b"origin")
        if not origins:
            return CONTINUE
        methods = found.get(b"access-control-request-method")
        method = methods[-1] if methods else None
        requested = [
            h.strip(b" \t").lower()
            for value in found.get(b"access-control-request-headers", ())
            for h in value.split(b",")
        ]
        origin = origins[0]
        # Two different origins: neither is believed.
        allowed = len(set(origins)) == 1 and cors.allows(origin)
        if head.method == b"OPTIONS" and method is not None:  # a preflight
            if not allowed:
                return _cors_refused("origin", origin)
            if method not in cors.methods:
                return _cors_refused("method", origin)
            if any(h and h not in cors.headers for h in requested):
                return _cors_refused("header", origin)
            answer = ((b"access-control-allow-origin", cors.allow_origin(origin)), *cors.preflight)
            return Reply(204, headers=answer, body=b"")
        if allowed:
            ctx.filter_state[id(self)] = origin
        return CONTINUE

    def on_response_head(self, ctx: RequestContext, head: ResponseHead, resume: Resume) -> Verdict:
        block = self.removal.block(head.block) + self.add
        cors = self.cors
        if cors is not None:
            origin = ctx.filter_state.pop(id(self), None)
            if origin is not None:
                block += b"Access-Control-Allow-Origin: " + cors.allow_origin(origin) + b"\r\n"
                block += cors.actual
            block += cors.vary
        head.block = block
        return CONTINUE


def build(spec: HeadersSpec) -> HeadersFilter:
    added = {name.lower(): (name, value) for name, value in spec.add.items()}
    remove = frozenset(n.lower().encode() for n in spec.remove) | {n.encode() for n in added}
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in added.values())
    if spec.cors is None:
        return HeadersFilter(remove, lines)
    remove |= {n.encode() for n in CORS_RESPONSE}
    return HeadersFilter(remove, lines, build_cors(spec.cors))


HEADERS: Final = register(FilterType("headers", HeadersSpec, build))
