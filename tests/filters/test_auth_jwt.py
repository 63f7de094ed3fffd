"""`authenticate: - jwt` in-process against a JWKS served over HTTPS on loopback: every
algorithm accepted with its key; `none`, HMAC, algorithms not configured, expired, not yet
valid, wrong issuer or audience, bad signature, missing sub or exp, oversized, a key of the
wrong type, all refused 401 with `error="invalid_token"`; revocation by `iat`; the JWKS
rotating under the gateway (a new kid accepted after one refetch, refetches rate limited)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from outwork.filters import CONTINUE, PolicyEnv, Reply
from outwork.filters.auth_jwt import JwtMethod, scopes_of
from outwork.filters.authenticate import AuthenticateFilter, AuthenticateSpec, build
from outwork.filters.rfc3339 import parse_rfc3339
from outwork.observe.refusals import Refusal
from tests.e2e.pki import TestPKI, make_pki
from tests.filters.fake import FakeContext, block_headers, request, run_head
from tests.filters.jwks_server import JwksServer, serve_jwks

ISSUER = "https://idp.example/"
NOW = 1_800_000_000.0  # the gateway clock the tests run at (2027-01-15)
Key = Any


def _new_key(alg: str) -> Key:
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    return ed25519.Ed25519PrivateKey.generate()


def jwk_of(key: Key, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
KEYS = {alg: _new_key(alg) for alg in ("RS256", "ES256", "ES384", "EdDSA")}


def key_for(alg: str) -> tuple[str, Key]:
    """The kid and private key the JWKS holds for an algorithm (RS*/PS* share an RSA key)."""
    family = "RS256" if alg.startswith(("RS", "PS")) else alg
    return family.lower(), KEYS[family]


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"sub": "alice", "iss": ISSUER, "aud": "api", "exp": NOW + 300, "iat": NOW - 10}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(alg: str = "ES256", kid: str | None = "", key: Key = None, **overrides: Any) -> str:
    default_kid, default_key = key_for(alg)
    headers = {"kid": default_kid if kid == "" else kid} if kid is not None else {}
    return jwt.encode(claims(**overrides), key or default_key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], key: bytes = b"") -> str:
    """A token made by hand: `alg: none` (no signature) or HMAC with `key`."""
    signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
    signature = b"" if not key else hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return signing + "." + _b64(signature)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("jwks-pki"))


@pytest.fixture
def idp(pki: TestPKI) -> Iterator[JwksServer]:
    with serve_jwks(pki) as server:
        server.keys = [jwk_of(key, family.lower()) for family, key in KEYS.items()]
        yield server


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def jwt_filter(
    idp: JwksServer, revoked: str | None = None, **options: Any
) -> tuple[AuthenticateFilter, JwtMethod, Clock]:
    spec = {
        "jwks_url": idp.url,
        "issuer": ISSUER,
        "audience": "api",
        "algorithms": list(ALGS),
        "leeway": "30s",
        "ca": str(idp.ca),
        "realm": "partners",
        **options,
    }
    specs = msgspec.convert([{"jwt": spec}], AuthenticateSpec, strict=True)
    env = PolicyEnv(Path("/"), None if revoked is None else parse_rfc3339(revoked))
    f = build(specs, env)
    method = f.methods[0]
    assert isinstance(method, JwtMethod)
    clock = Clock()
    method.jwks.clock = clock
    return f, method, clock


def bearer(value: str) -> tuple[str, str]:
    return ("Authorization", "Bearer " + value)


def check(f: AuthenticateFilter, value: str) -> Any:
    """The verdict on a request bearing `value`, at the tests' clock."""
    return run_head(f, FakeContext(now=NOW), request(bearer(value)))


def refused(verdict: Any, reason: str, refusal: Refusal = Refusal.UNAUTHENTICATED) -> Reply:
    assert isinstance(verdict, Reply), verdict
    assert (verdict.status, verdict.refusal) == (401, refusal)
    assert verdict.headers == (
        (b"www-authenticate", b'Bearer realm="partners", error="invalid_token"'),
    )
    assert verdict.detail["reason"] == reason, verdict.detail
    assert verdict.detail["method"] == "jwt"
    return verdict


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_is_accepted_with_its_key(idp: JwksServer, alg: str) -> None:
    f, _, _ = jwt_filter(idp)
    ctx = FakeContext(now=NOW)
    head = request(bearer(token(alg, scope="read write")), ("Accept", "*/*"))
    assert run_head(f, ctx, head) is CONTINUE
    assert ctx.identity is not None
    assert (ctx.identity.kind, ctx.identity.subject) == ("jwt", "alice")
    assert ctx.identity.scopes == {"read", "write"}
    assert ctx.identity.claims["iss"] == ISSUER
    # The token does not go upstream; the identity does.
    assert block_headers(head) == [("accept", "*/*"), ("x-authenticated-identity", "jwt:alice")]


def test_the_keys_are_fetched_once_and_cached(idp: JwksServer) -> None:
    f, _, _ = jwt_filter(idp)
    for _ in range(3):
        assert check(f, token()) is CONTINUE
    assert idp.fetches == 1


def _hs256_with_public_key() -> str:
    _, key = key_for("RS256")
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return unsigned({"alg": "HS256", "kid": "rs256", "typ": "JWT"}, claims(), pem)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: unsigned({"alg": "none", "kid": "es256"}, claims()), "algorithm not accepted"),
        (lambda: unsigned({"alg": "None"}, claims()), "algorithm not accepted"),
        (_hs256_with_public_key, "algorithm not accepted"),
        (lambda: token(exp=NOW - 31), "expired"),
        (lambda: token(nbf=NOW + 31), "not yet valid"),
        (lambda: token(iss="https://evil.example/"), "wrong issuer"),
        (lambda: token(aud="other"), "wrong audience"),
        (lambda: token(aud=None), "missing claim aud"),
        (lambda: token(sub=None), "missing claim sub"),
        (lambda: token(sub=42), "invalid token: InvalidSubjectError"),
        (lambda: token(exp=None), "missing claim exp"),
        (lambda: token(exp="soon"), "a time claim is not a number"),
        (lambda: token(key=_new_key("ES256")), "bad signature"),
        (lambda: token(kid="rs256"), "key does not fit the algorithm"),  # ES256 with RSA key
        (lambda: token("ES384", kid="es256"), "key does not fit the algorithm"),  # curve
        (lambda: token(pad="x" * 9000), "malformed or oversized bearer token"),
        (lambda: "not.a.jwt", "malformed JWT"),
        (lambda: "a b", "malformed or oversized bearer token"),
    ],
)
def test_refused_tokens(idp: JwksServer, make: Any, reason: str) -> None:
    f, _, _ = jwt_filter(idp)
    value = make()
    reply = refused(check(f, value), reason)
    assert value not in repr(reply)  # the token is never in the event


def test_a_tampered_payload_is_a_bad_signature(idp: JwksServer) -> None:
    f, _, _ = jwt_filter(idp)
    header, _, signature = token().split(".")
    forged = _b64(json.dumps(claims(sub="admin")).encode())
    refused(check(f, f"{header}.{forged}.{signature}"), "bad signature")


def test_leeway_applies_to_exp_and_nbf(idp: JwksServer) -> None:
    f, _, _ = jwt_filter(idp)
    for t in (token(exp=NOW - 29), token(nbf=NOW + 29)):
        assert check(f, t) is CONTINUE


def test_an_algorithm_not_configured_is_refused(idp: JwksServer) -> None:
    f, _, _ = jwt_filter(idp, algorithms=["RS256", "ES256"])
    assert check(f, token("ES256")) is CONTINUE
    for alg in ("PS256", "EdDSA", "ES384"):
        refused(check(f, token(alg)), "algorithm not accepted")


@pytest.mark.parametrize("algs", [["HS256"], ["none"], ["RS256", "HS512"], []])
def test_hmac_and_none_cannot_be_configured(idp: JwksServer, algs: list[str]) -> None:
    with pytest.raises(msgspec.ValidationError):
        jwt_filter(idp, algorithms=algs)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://idp.example/jwks.json", "plain http only to loopback"),
        ("ftp://idp.example/jwks.json", "not an https URL"),
    ],
)
def test_a_jwks_url_must_be_https_unless_loopback(idp: JwksServer, url: str, message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        jwt_filter(idp, jwks_url=url)


def test_revocation_refuses_tokens_issued_before_it_or_without_iat(idp: JwksServer) -> None:
    f, _, _ = jwt_filter(idp, revoked="2027-01-15T08:00:00Z")  # NOW - 0.0 is 08:00:00Z
    instant = parse_rfc3339("2027-01-15T08:00:00Z")
    ctx = FakeContext(now=NOW + 3600)
    assert run_head(f, ctx, request(bearer(token(iat=instant, exp=NOW + 7200)))) is CONTINUE
    for iat, reason in ((instant - 1, "issued before revocation.not_before"), (None, "no iat")):
        t = token(iat=iat, exp=NOW + 7200)
        reply = refused(run_head(f, ctx, request(bearer(t))), reason, Refusal.CREDENTIAL_REVOKED)
        assert reply.detail["subject"] == "alice"


def test_rotation_new_kid_after_one_refetch_old_kid_gone_refetch_rate_limited(
    idp: JwksServer,
) -> None:
    f, method, clock = jwt_filter(idp)
    old_key, new_key = KEYS["ES256"], _new_key("ES256")
    idp.keys = [jwk_of(old_key, "2026-old")]
    assert check(f, token(kid="2026-old")) is CONTINUE
    assert idp.fetches == 1

    idp.keys = [jwk_of(new_key, "2027-new")]  # the provider rotates: old kid gone
    clock.t += 5  # jwks_refresh_min (5s) after the first fetch
    fresh = token(kid="2027-new", key=new_key)
    assert check(f, fresh) is CONTINUE
    assert idp.fetches == 2

    # The old kid is unknown now, and within 5s of the last fetch nothing is fetched for it.
    stale = token(kid="2026-old")
    reply = refused(check(f, stale), "unknown kid")
    assert reply.detail["kid"] == "2026-old"
    for made_up in ("x1", "x2", "x3"):
        refused(check(f, token(kid=made_up)), "unknown kid")
    assert idp.fetches == 2
    assert check(f, fresh) is CONTINUE  # cached

    clock.t += 5  # then one refetch again; still unknown
    refused(check(f, stale), "unknown kid")
    assert idp.fetches == 3
    assert method.jwks.key("2027-new") is not None


def test_a_jwks_that_cannot_be_fetched_refuses_and_the_known_keys_stay(idp: JwksServer) -> None:
    f, _, clock = jwt_filter(idp)
    idp.status = 500
    reply = refused(check(f, token()), "JWKS unavailable")
    assert reply.detail["error"] == "HTTP 500"
    idp.status = 200
    clock.t += 5
    assert check(f, token()) is CONTINUE
    idp.body = b"{broken"
    clock.t += 5
    reply = refused(check(f, token(kid="new")), "unknown kid")
    assert reply.detail["error"] == "not JSON"
    assert check(f, token()) is CONTINUE  # kept


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ({"body": b'{"keys": []}' + b" " * 70000}, "larger than 65536 bytes"),
        ({"status": 302, "location": "http://127.0.0.1:1/jwks.json"}, "HTTP 302"),
        ({"body": b'{"keys": "none"}'}, "no `keys` list"),
    ],
)
def test_jwks_answers_that_are_refused(idp: JwksServer, setup: dict[str, Any], error: str) -> None:
    for name, value in setup.items():
        setattr(idp, name, value)
    f, _, _ = jwt_filter(idp)
    reply = refused(check(f, token()), "JWKS unavailable")
    assert reply.detail["error"] == error


def test_a_server_the_ca_does_not_vouch_for_is_not_trusted(
    idp: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = make_pki(tmp_path_factory.mktemp("other-pki"))
    f, _, _ = jwt_filter(idp, ca=str(other.ca_cert))
    reply = refused(check(f, token()), "JWKS unavailable")
    assert "CERTIFICATE_VERIFY_FAILED" in reply.detail["error"]
    assert idp.fetches == 0


def test_symmetric_and_private_keys_in_a_jwks_are_ignored(idp: JwksServer) -> None:
    _, key = key_for("ES256")
    private = ECAlgorithm.to_jwk(key, as_dict=True)
    idp.keys = [
        {"kty": "oct", "k": _b64(b"secret"), "kid": "es256"},
        {**private, "kid": "es256"},
        {**jwk_of(key, "es256"), "use": "enc"},
    ]
    f, _, _ = jwt_filter(idp)
    refused(check(f, token()), "unknown kid")


def test_a_token_without_kid_uses_the_only_key(idp: JwksServer) -> None:
    idp.keys = [jwk_of(KEYS["ES256"], "only")]
    f, _, _ = jwt_filter(idp)
    assert check(f, token(kid=None)) is CONTINUE


@pytest.mark.parametrize(
    ("claims_", "scopes"),
    [
        ({"scope": "a b  c"}, {"a", "b", "c"}),
        ({"scp": ["a", "b", 3]}, {"a", "b"}),
        ({"scp": "a b"}, {"a", "b"}),
        ({"scope": 7}, set()),
        ({}, set()),
    ],
)
def test_scopes(claims_: dict[str, Any], scopes: set[str]) -> None:
    assert scopes_of(claims_) == scopes


def test_a_repeated_token_skips_the_signature_but_not_the_clock(idp: JwksServer) -> None:
    f, method, clock = jwt_filter(idp)
    value = token(exp=NOW + 60)
    assert check(f, value) is CONTINUE
    assert len(method.verified) == 1
    assert value.encode() not in b"".join(method.verified)  # kept by hash only
    assert check(f, value) is CONTINUE
    late = run_head(f, FakeContext(now=NOW + 91), request(bearer(value)))
    refused(late, "expired")
    # After a rotation the key object changes: the token is verified again, and fails.
    idp.keys = [jwk_of(_new_key("ES256"), "es256")]
    clock.t += 5
    assert check(f, token(kid="unknown")) != CONTINUE  # triggers the refetch
    refused(check(f, value), "bad signature")


def test_a_set_older_than_max_age_is_refetched_in_the_background(idp: JwksServer) -> None:
    f, method, clock = jwt_filter(idp, jwks_max_age="10m")
    assert check(f, token()) is CONTINUE
    clock.t += 600

    async def run() -> Any:
        verdict = f.on_request_head(FakeContext(now=NOW), request(bearer(token())), lambda v: None)
        for _ in range(3000):  # the refetch ends on the loop; the request did not wait for it
            if method.jwks.waiters is None:
                break
            await asyncio.sleep(0.01)
        return verdict

    assert asyncio.run(run()) is CONTINUE
    assert idp.fetches == 2 and method.jwks.fetched_at == clock.t


def test_a_withdrawn_key_stops_serving_remembered_tokens_after_max_age(idp: JwksServer) -> None:
    f, method, clock = jwt_filter(idp, jwks_max_age="10m")
    remembered = token()
    assert check(f, remembered) is CONTINUE
    idp.keys = [jwk_of(_new_key("ES256"), "other")]  # es256 withdrawn by the provider
    clock.t += 600

    async def run() -> Any:
        verdict = f.on_request_head(
            FakeContext(now=NOW), request(bearer(remembered)), lambda v: None
        )
        for _ in range(3000):
            if method.jwks.waiters is None:
                break
            await asyncio.sleep(0.01)
        return verdict

    assert asyncio.run(run()) is CONTINUE  # served while the set was being refetched
    assert idp.fetches == 2
    refused(check(f, remembered), "unknown kid")


def test_plain_http_to_loopback_is_allowed(pki: TestPKI) -> None:
    with serve_jwks(pki, tls=False) as plain:
        plain.keys = [jwk_of(KEYS["ES256"], "es256")]
        f, _, _ = jwt_filter(plain, ca=None)
        assert check(f, token()) is CONTINUE
        assert plain.fetches == 1
