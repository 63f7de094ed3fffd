"""`authenticate` in-process, with API keys and mTLS (no I/O): the first method whose
credential is present decides, 401 with one challenge per method, the identity set and sent
upstream in its header (a client's own removed), the credential removed unless forwarded,
revoked keys refused as CREDENTIAL_REVOKED."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.filters import CONTINUE, Identity, PolicyEnv, Reply
from outwork.filters.auth_apikey import key_hash, request_sha256
from outwork.filters.authenticate import AuthenticateFilter, AuthenticateSpec, build
from outwork.filters.credentials import MAX_CREDENTIAL
from outwork.filters.rfc3339 import parse_rfc3339
from outwork.observe.refusals import Refusal
from outwork.tls.clientauth import ClientIdentity
from tests.filters.fake import FakeContext, block_headers, request, run_head

KEY = "s3cret-key-of-acme"
OLD_KEY = "an-old-key"
REVOKED_KEY = "a-revoked-key"
INCIDENT = "2026-12-06T22:00:00Z"


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


API_KEY: dict[str, Any] = {
    "api_key": {
        "header": "X-API-Key",
        "keys": [
            {
                "id": "k1",
                "hash": _hash(KEY),
                "owner": "acme",
                "scopes": ["read"],
                "created": "2026-12-07T08:00:00Z",
            },
            {"id": "k0", "hash": _hash(OLD_KEY).upper().replace("SHA256", "sha256")},
            {"id": "k9", "hash": _hash(REVOKED_KEY), "revoked": True},
        ],
    }
}
MTLS = {"mtls": {"subjects": ["CN=partner-*"], "sans": ["DNS:*.partners.example"]}}


def _filter(*methods: dict[str, Any], revoked: str | None = None) -> AuthenticateFilter:
    specs = msgspec.convert(list(methods), AuthenticateSpec, strict=True)
    env = PolicyEnv(revoked_before=None if revoked is None else parse_rfc3339(revoked))
    return build(specs, env)


def _refused(verdict: Any, refusal: Refusal = Refusal.UNAUTHENTICATED) -> Reply:
    assert isinstance(verdict, Reply), verdict
    assert (verdict.status, verdict.refusal) == (401, refusal)
    return verdict


def _secrets_absent(reply: Reply, *secrets: str) -> None:
    text = repr(reply)
    for secret in secrets:
        assert secret not in text


def test_a_valid_key_sets_the_identity_and_goes_upstream_without_the_key() -> None:
    ctx = FakeContext()
    head = request(("X-API-Key", KEY), ("X-Authenticated-Identity", "api_key:admin"))
    assert run_head(_filter(API_KEY, MTLS), ctx, head) is CONTINUE
    assert ctx.identity == Identity("api_key", "k1", frozenset({"read"}), {}, "acme")
    upstream = block_headers(head)
    assert upstream == [("x-authenticated-identity", "api_key:k1")]  # the spoofed one gone
    assert (b"X-API-Key", KEY.encode()) not in head.headers  # later steps see it gone too
    assert (b"X-Authenticated-Identity", b"api_key:k1") in head.headers


def test_forward_credential_keeps_the_key_and_a_named_identity_header() -> None:
    options = {"forward_credential": True, "identity_header": "X-Who"}
    spec = {"api_key": {**API_KEY["api_key"], **options}}
    head = request(("x-api-key", KEY), ("X-Who", "forged"), ("Accept", "*/*"))
    assert run_head(_filter(spec), FakeContext(), head) is CONTINUE
    assert block_headers(head) == [("x-api-key", KEY), ("accept", "*/*"), ("x-who", "api_key:k1")]


@given(st.binary(min_size=1, max_size=MAX_CREDENTIAL))
def test_a_key_is_hashed_per_request_as_its_configured_hash_was(key: bytes) -> None:
    """The per-request SHA-256 (CPython's own) gives the digest `outwork hash api-key` and
    hashlib give, whatever the key's length (one block, several, a partial last one)."""
    assert request_sha256(key).digest() == hashlib.sha256(key).digest()
    assert "sha256:" + request_sha256(key).hexdigest() == key_hash(key)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ((("X-API-Key", "wrong"),), "unknown API key"),
        ((("X-API-Key", KEY), ("X-API-Key", KEY)), "several API key headers"),
        ((("X-API-Key", ""),), "malformed API key"),
        ((("X-API-Key", "x" * 9000),), "malformed API key"),
        ((), "no credential"),
        ((("Authorization", "Bearer abc"),), "no credential"),  # no jwt method configured
    ],
)
def test_refused_keys_get_401_with_the_challenges(
    headers: tuple[tuple[str, str], ...], reason: str
) -> None:
    basic = {"basic": {"users": [{"name": "ops", "hash": ARGON2}], "realm": "partners"}}
    reply = _refused(run_head(_filter(API_KEY, MTLS, basic), FakeContext(), request(*headers)))
    assert reply.headers == (
        (b"www-authenticate", b"ApiKey header=x-api-key"),
        (b"www-authenticate", b'Basic realm="partners", charset="UTF-8"'),
    )
    assert reply.detail["reason"] == reason
    _secrets_absent(reply, KEY)


def test_a_revoked_key_is_refused_as_revoked_always() -> None:
    reply = _refused(
        run_head(_filter(API_KEY), FakeContext(), request(("X-API-Key", REVOKED_KEY))),
        Refusal.CREDENTIAL_REVOKED,
    )
    assert reply.detail == {"reason": "revoked", "key_id": "k9", "method": "api_key"}


@pytest.mark.parametrize(("key", "key_id", "accepted"), [(KEY, "k1", True), (OLD_KEY, "k0", False)])
def test_revocation_refuses_keys_created_before_it_or_without_created(
    key: str, key_id: str, accepted: bool
) -> None:
    ctx = FakeContext()
    verdict = run_head(_filter(API_KEY, revoked=INCIDENT), ctx, request(("X-API-Key", key)))
    if accepted:
        assert verdict is CONTINUE and ctx.identity is not None
        return
    reply = _refused(verdict, Refusal.CREDENTIAL_REVOKED)
    assert reply.detail["key_id"] == key_id and ctx.identity is None


def test_the_first_method_whose_credential_is_present_decides() -> None:
    good = ClientIdentity("CN=partner-a,O=Acme", ("DNS:a.partners.example",), "ab" * 32)
    # A wrong key fails even though the certificate would pass: the key was presented first.
    ctx = FakeContext(client_certificate=good)
    _refused(run_head(_filter(API_KEY, MTLS), ctx, request(("X-API-Key", "wrong"))))
    # Without a key, the certificate decides.
    ctx = FakeContext(client_certificate=good)
    assert run_head(_filter(API_KEY, MTLS), ctx, request()) is CONTINUE
    assert ctx.identity == Identity("mtls", "CN=partner-a,O=Acme")


@pytest.mark.parametrize(
    ("subject", "sans", "accepted"),
    [
        ("CN=partner-a,O=Acme", (), True),
        ("CN=other,O=Acme", ("DNS:b.partners.example",), True),  # by SAN
        ("CN=other,O=Acme", ("DNS:partners.example",), False),
        ("CN=Partner-a", (), False),  # case-sensitive
        ("O=Acme,CN=partner-a", (), False),  # the whole string
    ],
)
def test_mtls_patterns(subject: str, sans: tuple[str, ...], accepted: bool) -> None:
    ctx = FakeContext(client_certificate=ClientIdentity(subject, sans, "cd" * 32))
    verdict = run_head(_filter(MTLS), ctx, request(("X-Authenticated-Identity", "mtls:x")))
    if accepted:
        assert verdict is CONTINUE and ctx.identity == Identity("mtls", subject)
    else:
        reply = _refused(verdict)
        assert reply.headers == ()  # mTLS has no HTTP challenge
        assert reply.detail["subject"] == subject


def test_an_identity_with_cr_lf_cannot_add_a_header_upstream() -> None:
    subject = "CN=partner-x\r\nX-Admin: 1,O=100%"
    ctx = FakeContext(client_certificate=ClientIdentity(subject, (), "ef" * 32))
    head = request()
    assert run_head(_filter(MTLS), ctx, head) is CONTINUE
    assert block_headers(head) == [
        ("x-authenticated-identity", "mtls:CN=partner-x%0D%0AX-Admin:%201,O=100%25")
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "length >= 1"),
        ([{"api_key": API_KEY["api_key"], **MTLS}], "this one has api_key, mtls"),
        ([{}], "one of api_key, jwt, basic, mtls"),
        ([{"mtls": {}}], "needs `subjects` or `sans`"),
        ([{"api_key": {"keys": [{"id": "a", "hash": "md5:00"}]}}], "sha256"),
        ([{"api_key": {"keys": [{"id": "a", "hash": _hash("x")}] * 2}}], "duplicate key id"),
        (
            [{"api_key": {"keys": [{"id": "a", "hash": _hash("x"), "created": "2026-01-01"}]}}],
            "RFC 3339",
        ),
        ([{"api_key": {"keys": [{"id": "a", "hash": _hash("x")}], "header": "X Key"}}], "match"),
        ([{"basic": {"users": [{"name": "ops", "hash": "plain"}]}}], "argon2"),
        ([{"mtls": {"subjects": ["*"], "identity_header": "Content-Length"}}], "gateway"),
        ([{"mtls": {"subjects": ["*"], "identity_header": "Host"}}], "gateway"),
        (
            [
                {
                    "api_key": {
                        "keys": [{"id": "a", "hash": _hash("x")}],
                        "header": "Transfer-Encoding",
                    }
                }
            ],
            "gateway",
        ),
        (
            [
                {
                    "api_key": {
                        "keys": [{"id": "a", "hash": _hash("x")}],
                        "header": "X-Who",
                        "identity_header": "x-who",
                    }
                }
            ],
            "must differ",
        ),
        ([{"basic": {"users": [{"name": "ops", "hash": "$argon2id$nonsense"}]}}], "argon2"),
    ],
)
def test_config_mistakes(spec: list[Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(spec, AuthenticateSpec, strict=True)


# "pw", at argon2's lowest cost (tests only)
ARGON2 = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$V4H3HtTOx/OSF1MH0AOC7qYPwyx7EScAQXWSGhaLb7Q"
