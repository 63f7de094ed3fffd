"""`authorize`: what the authenticated identity may do on a route.

    authorize: {scopes: [read]}            # every one required
    authorize: {claims: {role: [admin]}}   # a JWT claim equal to one value, or a list claim
                                           # holding one; every claim named must match

Without an identity (no `authenticate` before it on the route): 401 `Refusal.UNAUTHENTICATED`.
An identity lacking a scope or claim: 403 `Refusal.FORBIDDEN`. API keys and basic users carry
the scopes the config gives them; JWTs those of `scope` or `scp`; claims are JWT claims only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from outwork.filters import FilterType, register
from outwork.filters.api import CONTINUE, Filter, Reply, RequestContext, Resume, Verdict
from outwork.filters.authorize_spec import AuthorizeSpec, ClaimValue
from outwork.http.messages import RequestHead
from outwork.observe.refusals import Refusal


def _claim_matches(value: Any, allowed: frozenset[ClaimValue]) -> bool:
    if isinstance(value, list):
        return any(_claim_matches(v, allowed) for v in value if not isinstance(v, list))
    # `True == 1` in Python: a claim `true` must not pass for a configured 1, nor the reverse.
    return any(type(value) is type(a) and value == a for a in allowed)


@dataclass(frozen=True, slots=True)
class AuthorizeFilter(Filter):
    scopes: frozenset[str]
    claims: tuple[tuple[str, frozenset[ClaimValue]], ...]

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        identity = ctx.identity
        if identity is None:
            return Reply(401, Refusal.UNAUTHENTICATED, detail={"reason": "no identity"})
        missing = self.scopes - identity.scopes
        if missing:
            detail = {"subject": identity.subject, "missing_scopes": sorted(missing)}
            return Reply(403, Refusal.FORBIDDEN, detail=detail)
        for name, allowed in self.claims:
            if name not in identity.claims or not _claim_matches(identity.claims[name], allowed):
                detail = {"subject": identity.subject, "claim": name}
                return Reply(403, Refusal.FORBIDDEN, detail=detail)
        return CONTINUE


def build(spec: AuthorizeSpec) -> AuthorizeFilter:
    claims = tuple((name, frozenset(values)) for name, values in spec.claims.items())
    return AuthorizeFilter(frozenset(spec.scopes), claims)


AUTHORIZE: Final = register(FilterType("authorize", AuthorizeSpec, build))
