"""`authenticate: - jwt`: a bearer JWT signed by an identity provider's key (JWKS).

    - jwt: {jwks_url: "https://idp/jwks.json", issuer: "https://idp/", audience: api,
            algorithms: [RS256, ES256], leeway: 30s}

Checked, in order: one `Authorization: Bearer` header of at most `max_token` bytes; an `alg`
in `algorithms` (which may hold only RS256/384/512, PS256/384/512, ES256/384 and EdDSA: `none`
and the HMAC algorithms are never accepted, a provider's public key is no HMAC secret); the
key named by `kid` in the provider's JWKS (fetched, or refetched once, while the request
waits), of the type the algorithm needs; the signature; `iss` and `aud`; `exp` (required) and
`nbf` against the gateway clock with `leeway`; a string `sub`; with `revocation.not_before`
set, an `iat` at or after it (else 401 `Refusal.CREDENTIAL_REVOKED`). A JWKS that cannot be
fetched refuses the request with 401 (`reason` in the event: the fetch error), as does a kid
still unknown after a refetch. Scopes come from `scope` (space separated) or `scp`.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from msgspec import Meta

from outwork.filters import Identity, RequestContext
from outwork.filters.auth_method import Done, Failure, Method, Outcome, authorization_scheme
from outwork.filters.auth_method_spec import MethodOptions, Realm
from outwork.filters.credentials import MAX_CREDENTIAL, header_values, parse_authorization
from outwork.filters.jwks import JwksCache, JwksKey, JwksSource
from outwork.http.messages import RequestHead
from outwork.observe.refusals import Refusal

# Tokens whose signature and claims were verified, by SHA-256 (never the token itself), with
# the key that verified them: a repeated token skips the signature check (hundreds of us), not
# the time checks. All forgotten when full, and with the filter at a reload.
MAX_VERIFIED = 10_000
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
_EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
Duration = str | int | float
NonEmpty = Annotated[str, Meta(min_length=1, max_length=1024)]


class JwtSpec(MethodOptions, kw_only=True):
    jwks_url: NonEmpty
    issuer: NonEmpty
    audience: NonEmpty | Annotated[list[NonEmpty], Meta(min_length=1, max_length=64)]
    algorithms: Annotated[list[str], Meta(min_length=1, max_length=len(ALGORITHMS))]
    leeway: Duration = "30s"
    ca: NonEmpty | None = None  # a PEM bundle to trust for the JWKS instead of the system's
    jwks_refresh_min: Duration = "5s"
    jwks_max_age: Duration = "1h"
    jwks_timeout: Duration = "5s"
    jwks_max_size: Annotated[int, Meta(ge=1024, le=1 << 20)] = 64 * 1024
    max_token: Annotated[int, Meta(ge=256, le=MAX_CREDENTIAL)] = MAX_CREDENTIAL
    realm: Realm = "outwork"

    def __post_init__(self) -> None:
        super().__post_init__()
        for alg in self.algorithms:
            if alg not in ALGORITHMS:
                why = " (a public key is no HMAC secret)" if alg.upper().startswith("HS") else ""
                raise ValueError(
                    f"jwt: algorithm {alg!r} is not accepted{why}; known: {', '.join(ALGORITHMS)}"
                )
        url = urlsplit(self.jwks_url)
        if url.scheme == "http":
            if url.hostname not in ("127.0.0.1", "::1", "localhost"):
                raise ValueError("jwt: jwks_url over plain http only to loopback; use https")
        elif url.scheme != "https" or not url.hostname:
            raise ValueError(f"jwt: jwks_url {self.jwks_url!r} is not an https URL")


def ssl_context(ca: str | None, base: Path) -> ssl.SSLContext:
    """The JWKS fetch's TLS: the system trust store, or `ca` (relative to the config)."""
    context = ssl.create_default_context()
    if ca is not None:
        path = base / ca
        try:
            context = ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"jwt: ca {str(path)!r}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _fits(key: Any, alg: str) -> bool:
    """Whether a JWKS key is of the type `alg` signs with (and the curve it names)."""
    if alg.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC_CURVES[alg])
    return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """`scope` (RFC 8693: space separated) or `scp` (a list, or a string, as some IdPs send)."""
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _number(claims: dict[str, Any], name: str) -> float | None | bool:
    """A NumericDate claim; None when absent, False when not a number."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return float(value)


class JwtMethod(Method):
    __slots__ = (
        "algorithms",
        "issuer",
        "audience",
        "leeway",
        "max_token",
        "realm",
        "jwks",
        "revoked_before",
        "verified",
    )
    kind = "jwt"
    credential_headers = frozenset({b"authorization"})

    def __init__(
        self, spec: JwtSpec, jwks: JwksCache, leeway: float, revoked_before: float | None
    ) -> None:
        super().__init__(spec)
        self.algorithms = frozenset(spec.algorithms)
        self.issuer = spec.issuer
        self.audience = spec.audience
        self.leeway = leeway
        self.max_token = spec.max_token
        self.realm = spec.realm.encode()
        self.jwks = jwks
        self.revoked_before = revoked_before
        self.verified: dict[bytes, tuple[str | None, JwksKey, Identity]] = {}

    def challenge(self, failed: bool) -> bytes:
        value = b'Bearer realm="' + self.realm + b'"'
        return value + b', error="invalid_token"' if failed else value

    def present(self, ctx: RequestContext, head: RequestHead) -> bool:
        return authorization_scheme(head) == b"bearer"

    def verify(self, ctx: RequestContext, head: RequestHead, done: Done) -> Outcome | None:
        values = header_values(head, b"authorization")
        if len(values) != 1:
            return Failure("several Authorization headers")
        parsed = parse_authorization(values[0])
        if parsed is None or len(parsed[1]) > self.max_token:
            return Failure("malformed or oversized bearer token")
        token = parsed[1].decode("ascii")
        digest = hashlib.sha256(parsed[1]).digest()
        seen = self.verified.get(digest)
        if seen is not None and self.jwks.key(seen[0]) is seen[1]:
            # The same token under the same key: its header, signature, issuer and audience
            # were checked; its times are checked again.
            self._refresh_if_stale()
            identity = seen[2]
            detail = {"kid": str(seen[0])[:128], "subject": identity.subject[:256]}
            return self._times(ctx, identity.claims, identity.subject, detail)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return Failure("malformed JWT")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return Failure("algorithm not accepted", {"alg": str(alg)[:32]})
        if kid is not None and not isinstance(kid, str):
            return Failure("malformed kid")
        key = self.jwks.key(kid)
        if key is not None:
            self._refresh_if_stale()
            return self._check(ctx, digest, token, alg, kid, key)
        if not self.jwks.may_fetch():
            return self._unknown(kid)

        def fetched() -> None:
            key = self.jwks.key(kid)
            done(self._check(ctx, digest, token, alg, kid, key) if key else self._unknown(kid))

        self.jwks.refresh(fetched)
        return None

    def _refresh_if_stale(self) -> None:
        """A set older than `jwks_max_age` is refetched in the background (a key the provider
        withdrew stops being trusted); the key in hand serves meanwhile."""
        if self.jwks.stale() and self.jwks.may_fetch():
            self.jwks.refresh()

    def _unknown(self, kid: str | None) -> Failure:
        if self.jwks.last_error and not self.jwks.keys:
            return Failure("JWKS unavailable", {"error": self.jwks.last_error})
        detail = {"kid": str(kid)[:128]}
        if self.jwks.last_error:
            detail["error"] = self.jwks.last_error
        return Failure("unknown kid", detail)

    def _check(
        self,
        ctx: RequestContext,
        digest: bytes,
        token: str,
        alg: str,
        kid: str | None,
        jwk: JwksKey,
    ) -> Outcome:
        outcome = self._verify(ctx, token, alg, kid, jwk)
        if isinstance(outcome, Identity):
            if len(self.verified) >= MAX_VERIFIED:
                self.verified.clear()
            self.verified[digest] = (kid, jwk, outcome)
        return outcome

    def _verify(
        self, ctx: RequestContext, token: str, alg: str, kid: str | None, jwk: JwksKey
    ) -> Outcome:
        detail: dict[str, Any] = {"kid": str(kid)[:128]}
        if not _fits(jwk.key, alg) or jwk.alg not in (alg, None):
            return Failure("key does not fit the algorithm", {**detail, "alg": alg})
        options: dict[str, Any] = {
            "verify_exp": False,  # checked below against the gateway's clock
            "verify_nbf": False,
            "verify_iat": False,
            "require": ["sub"],
        }
        try:
            claims = jwt.decode(
                token,
                jwk.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.InvalidSignatureError:
            return Failure("bad signature", detail)
        except jwt.InvalidAudienceError:
            return Failure("wrong audience", detail)
        except jwt.InvalidIssuerError:
            return Failure("wrong issuer", detail)
        except jwt.MissingRequiredClaimError as exc:
            return Failure(f"missing claim {exc.claim}", detail)
        except jwt.PyJWTError as exc:
            return Failure(f"invalid token: {type(exc).__name__}", detail)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            return Failure("sub is not a string", detail)
        detail["subject"] = subject[:256]
        return self._times(ctx, claims, subject, detail)

    def _times(
        self, ctx: RequestContext, claims: dict[str, Any], subject: str, detail: dict[str, Any]
    ) -> Outcome:
        now, leeway = ctx.now, self.leeway
        exp, nbf, iat = _number(claims, "exp"), _number(claims, "nbf"), _number(claims, "iat")
        if exp is None:
            return Failure("missing claim exp", detail)
        if exp is False or nbf is False or iat is False:
            return Failure("a time claim is not a number", detail)
        if now > exp + leeway:
            return Failure("expired", detail)
        if nbf is not None and now + leeway < nbf:
            return Failure("not yet valid", detail)
        if self.revoked_before is not None and (iat is None or iat < self.revoked_before):
            reason = "issued before revocation.not_before" if iat is not None else "no iat"
            return Failure(reason, detail, Refusal.CREDENTIAL_REVOKED)
        return Identity("jwt", subject, scopes_of(claims), claims)


def build_jwks(spec: JwtSpec, base: Path, seconds: Callable[[Duration], float]) -> JwksCache:
    url = urlsplit(spec.jwks_url)
    context = None if url.scheme == "http" else ssl_context(spec.ca, base)
    source = JwksSource(spec.jwks_url, context, seconds(spec.jwks_timeout), spec.jwks_max_size)
    return JwksCache(source, seconds(spec.jwks_refresh_min), seconds(spec.jwks_max_age))
