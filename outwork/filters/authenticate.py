"""`authenticate`: who the client is. A list of methods; the first whose credential is present
in the request decides (a later method is not tried when an earlier one's credential fails).

    authenticate:
      - api_key: {header: X-API-Key, keys: [{id: k1, hash: "sha256:HEX", owner: acme}]}
      - jwt: {jwks_url: "https://idp/jwks.json", issuer: "https://idp/", audience: api,
              algorithms: [RS256, ES256], leeway: 30s}
      - basic: {users: [{name: ops, hash: "$argon2id$..."}]}
      - mtls: {subjects: ["CN=partner-*"]}

Accepted: `ctx.identity` is set for the steps after (authorize, rate_limit), the identity goes
upstream as `X-Authenticated-Identity: kind:subject` (`identity_header` per method) after every
client-sent header of that name is removed, and the credential (the API key header, the
Authorization header) is removed unless `forward_credential: true`. Refused: 401 with one
`WWW-Authenticate` challenge per method that has one, `Refusal.UNAUTHENTICATED` (or
`CREDENTIAL_REVOKED`), the reason in the event's detail, never the credential.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from outwork.config.values import parse_duration
from outwork.filters import FilterType, PolicyEnv, register
from outwork.filters.api import (
    CONTINUE,
    Filter,
    Identity,
    Reply,
    RequestContext,
    Resume,
    Stop,
    Verdict,
)
from outwork.filters.auth_apikey import ApiKeyMethod
from outwork.filters.auth_basic import BasicMethod
from outwork.filters.auth_jwt import JwtMethod, build_jwks
from outwork.filters.auth_method import Failure, Method, Outcome
from outwork.filters.auth_mtls import MtlsMethod
from outwork.filters.authenticate_spec import AuthenticateSpec, MethodSpec
from outwork.filters.credentials import LineRemoval, edit_head, identity_value
from outwork.http.messages import RequestHead


@dataclass(frozen=True, slots=True)
class AuthenticateFilter(Filter):
    methods: tuple[Method, ...]
    # Every identity header some method sets (lower case): a client's own never goes upstream.
    identity_headers: frozenset[bytes]
    # What each method's success removes from the head (by id(method)), compiled once.
    removals: dict[int, LineRemoval] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        removals = {}
        for method in self.methods:
            remove = self.identity_headers
            if not method.forward_credential:
                remove = remove | method.credential_headers
            removals[id(method)] = LineRemoval(remove)
        object.__setattr__(self, "removals", removals)

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        for method in self.methods:
            if method.present(ctx, head):
                break
        else:
            return self.refuse(None, Failure("no credential"))

        def done(outcome: Outcome) -> None:
            resume(self.finish(ctx, head, method, outcome))

        outcome = method.verify(ctx, head, done)
        if outcome is None:
            return Stop()
        return self.finish(ctx, head, method, outcome)

    def finish(
        self, ctx: RequestContext, head: RequestHead, method: Method, outcome: Outcome
    ) -> Verdict:
        if isinstance(outcome, Failure):
            return self.refuse(method, outcome)
        ctx.identity = outcome
        value = identity_value(outcome.kind, outcome.subject)
        edit_head(head, self.removals[id(method)], method.identity_header, value)
        return CONTINUE

    def refuse(self, method: Method | None, failure: Failure) -> Reply:
        headers = []
        for each in self.methods:
            challenge = each.challenge(each is method)
            if challenge is not None:
                headers.append((b"www-authenticate", challenge))
        detail: dict[str, Any] = {"reason": failure.reason, **failure.detail}
        if method is not None:
            detail["method"] = method.kind
        return Reply(401, failure.refusal, tuple(headers), detail=detail)


def identity_of(identity: Identity) -> bytes:
    """The identity header's value (for tests and the docs): `kind:subject`, percent-encoded."""
    return identity_value(identity.kind, identity.subject)


def build(specs: list[MethodSpec], env: PolicyEnv) -> AuthenticateFilter:
    def seconds(value: str | int | float) -> float:
        if value in (0, "0", "0s"):
            return 0.0
        return parse_duration(value)

    methods: list[Method] = []
    for spec in specs:
        if spec.api_key is not None:
            methods.append(ApiKeyMethod(spec.api_key, env.revoked_before))
        elif spec.jwt is not None:
            jwks = build_jwks(spec.jwt, env.base, seconds)
            methods.append(JwtMethod(spec.jwt, jwks, seconds(spec.jwt.leeway), env.revoked_before))
        elif spec.basic is not None:
            methods.append(BasicMethod(spec.basic, seconds(spec.basic.cache_ttl)))
        elif spec.mtls is not None:
            methods.append(MtlsMethod(spec.mtls))
    names = frozenset(m.identity_header.lower() for m in methods)
    return AuthenticateFilter(tuple(methods), names)


def _no_env(specs: list[MethodSpec]) -> AuthenticateFilter:
    return build(specs, PolicyEnv())


AUTHENTICATE: Final = register(
    FilterType("authenticate", AuthenticateSpec, _no_env, build_in_env=build)  # type: ignore[arg-type]
)
