"""The security policy steps through a running gateway, with curl over HTTP/1.1 and HTTP/2 on
one TLS listener (client certificates optional): `access`, `authenticate` (api_key, jwt against
a JWKS served over HTTPS on loopback, basic, mtls with a real client certificate) and
`authorize`. Each: allowed (the backend sees the identity header, never the credential nor a
client's forged identity), refused with its status and `WWW-Authenticate`, counted by reason and
route, and written as a `policy.<reason>` security event that names the key or subject and never
holds the credential; `revocation.not_before` refuses what was issued before it."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher

from tests.conftest import Gateway, gateway_config, metric_sample
from tests.e2e.pki import TestPKI, make_pki
from tests.filters.jwks_server import JwksServer, serve_jwks
from tests.filters.test_auth_jwt import KEYS, jwk_of
from tests.proxy import test_listener_tls
from tests.proxy.test_h2 import curl_h2
from tests.proxy.test_listener_tls import Pki, read_lines

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

PROTOCOLS = ("--http1.1", "--http2")
KEY, OLD_KEY = "k1-secret-of-acme", "k0-secret-from-before"
PASSWORD = "correct horse battery"
ISSUER = "https://idp.test/"
INCIDENT = time.time() - 3600  # revocation.not_before: an hour ago
EVENTS = "events.jsonl"


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def policies(idp: JwksServer) -> dict[str, Any]:
    after, before = _rfc3339(INCIDENT + 60), _rfc3339(INCIDENT - 60)
    keys = [
        {"id": "k1", "hash": _hash(KEY), "owner": "acme", "scopes": ["read"], "created": after},
        {"id": "k0", "hash": _hash(OLD_KEY), "scopes": ["read"], "created": before},
    ]
    api_key = {"api_key": {"header": "X-API-Key", "keys": keys}}
    hashed = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    return {
        "keyed": {"authenticate": [api_key], "authorize": {"scopes": ["read"]}},
        "admins": {"authenticate": [api_key], "authorize": {"scopes": ["admin"]}},
        "tokens": {
            "authenticate": [
                {
                    "jwt": {
                        "jwks_url": idp.url,
                        "ca": str(idp.ca),
                        "issuer": ISSUER,
                        "audience": "api",
                        "algorithms": ["ES256", "RS256"],
                        "realm": "partners",
                    }
                }
            ],
            "authorize": {"claims": {"role": ["partner"]}},
        },
        "people": {"authenticate": [{"basic": {"users": [{"name": "ops", "hash": hashed}]}}]},
        "clients": {"authenticate": [{"mtls": {"subjects": ["CN=client.*"]}}]},
        "nobody": {"access": {"deny": ["127.0.0.0/8", "::1/128"]}},
    }


ROUTES = [
    {
        "name": name,
        "match": {"path_prefix": f"/{name}"},
        "upstream": "backend",
        "policies": [policy],
    }
    for name, policy in [
        ("key", "keyed"),
        ("admin", "admins"),
        ("jwt", "tokens"),
        ("basic", "people"),
        ("mtls", "clients"),
        ("closed", "nobody"),
    ]
]


@pytest.fixture(scope="module")
def idp_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("idp-pki"))


@pytest.fixture
def idp(idp_pki: TestPKI) -> Iterator[JwksServer]:
    with serve_jwks(idp_pki) as server:
        server.keys = [jwk_of(KEYS["ES256"], "es256")]
        yield server


@pytest.fixture
def gw(make_backend: Any, make_gateway: Any, pki: Pki, idp: JwksServer) -> Gateway:
    backend = make_backend()
    server = {"cert": str(pki.folder / "server.pem"), "key": str(pki.folder / "server.key")}
    tls = {"certificates": [server], "client_auth": "optional", "client_ca": str(pki.client_ca)}
    config = gateway_config(
        backend.url,
        listeners=[{"name": "public", "bind": "127.0.0.1:0", "tls": tls}],
        routes=ROUTES,
        logging={"security_events": EVENTS, "access_log": "access.jsonl"},
        policies=policies(idp),
        revocation={"not_before": _rfc3339(INCIDENT)},
    )
    return make_gateway(config)  # type: ignore[no-any-return]


class Answer:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.replace(b"\r\n", b"\n").rpartition(b"\n\n")
        block = head.split(b"\n\n")[-1].decode()  # the last response (after any 100)
        lines = block.split("\n")
        self.status = int(lines[0].split()[1])
        self.headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def seen(self) -> dict[str, str]:
        """The request headers the backend received (it echoes them as x-seen-*)."""
        return {k[len("x-seen-") :]: v for k, v in self.headers if k.startswith("x-seen-")}


def call(gw: Gateway, pki: Pki, protocol: str, path: str, *args: str) -> Answer:
    got = curl_h2(gw, pki, path, protocol, "-D", "-", *args)
    assert got.returncode == 0, got.stderr
    return Answer(got.stdout)


def events(gw: Gateway) -> list[dict[str, Any]]:
    path = gw.config_file.parent / EVENTS
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event"].startswith("policy.")]


def refused(gw: Gateway, route: str, reason: str) -> float:
    return metric_sample(gw.scrape(), "outwork_policy_refused_total", route=route, reason=reason)


def bearer(**overrides: Any) -> str:
    claims = {"sub": "alice", "iss": ISSUER, "aud": "api", "role": "partner",
              "iat": int(time.time()), "exp": int(time.time()) + 300}  # fmt: skip
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, KEYS["ES256"], algorithm="ES256", headers={"kid": "es256"})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_api_key(gw: Gateway, pki: Pki, protocol: str) -> None:
    ok = call(gw, pki, protocol, "/key", "-H", f"X-API-Key: {KEY}",
              "-H", "X-Authenticated-Identity: api_key:root")  # fmt: skip
    assert ok.status == 200
    seen = ok.seen()
    assert seen["x-authenticated-identity"] == "api_key:k1"  # the forged one removed
    assert "x-api-key" not in seen

    bad = call(gw, pki, protocol, "/key", "-H", "X-API-Key: guessed")
    assert bad.status == 401
    assert bad.all("www-authenticate") == ["ApiKey header=x-api-key"]
    none = call(gw, pki, protocol, "/key")
    assert none.status == 401
    assert refused(gw, "key", "unauthenticated") == 2.0
    reasons = [(e["event"], e["detail"]["reason"]) for e in events(gw)]
    assert reasons == [
        ("policy.unauthenticated", "unknown API key"),
        ("policy.unauthenticated", "no credential"),
    ]
    assert "guessed" not in (gw.config_file.parent / EVENTS).read_text()
    logged = read_lines(gw.config_file.parent / "access.jsonl", 3)
    assert [(x["identity"], x["status"]) for x in logged] == [
        ("api_key:k1", 200),
        (None, 401),
        (None, 401),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_revoked_key_and_missing_scope(gw: Gateway, pki: Pki, protocol: str) -> None:
    old = call(gw, pki, protocol, "/key", "-H", f"X-API-Key: {OLD_KEY}")
    assert old.status == 401
    forbidden = call(gw, pki, protocol, "/admin", "-H", f"X-API-Key: {KEY}")
    assert forbidden.status == 403
    assert refused(gw, "key", "credential_revoked") == 1.0
    assert refused(gw, "admin", "forbidden") == 1.0
    revoked, denied = events(gw)
    assert revoked["event"] == "policy.credential_revoked"
    assert revoked["detail"]["key_id"] == "k0"
    assert denied["event"] == "policy.forbidden"
    assert denied["detail"]["missing_scopes"] == ["admin"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_jwt(gw: Gateway, pki: Pki, protocol: str, idp: JwksServer) -> None:
    ok = call(gw, pki, protocol, "/jwt", "-H", f"Authorization: Bearer {bearer()}")
    assert ok.status == 200
    assert ok.seen()["x-authenticated-identity"] == "jwt:alice"
    assert "authorization" not in ok.seen()

    expired = bearer(exp=int(time.time()) - 3600)
    late = call(gw, pki, protocol, "/jwt", "-H", f"Authorization: Bearer {expired}")
    assert late.status == 401
    assert late.all("www-authenticate") == ['Bearer realm="partners", error="invalid_token"']
    early = call(gw, pki, protocol, "/jwt", "-H", f"Authorization: Bearer {bearer(iat=None)}")
    assert early.status == 401  # no iat while revocation is set
    other = call(gw, pki, protocol, "/jwt", "-H", f"Authorization: Bearer {bearer(role='x')}")
    assert other.status == 403
    assert refused(gw, "jwt", "unauthenticated") == 1.0
    assert refused(gw, "jwt", "credential_revoked") == 1.0
    assert refused(gw, "jwt", "forbidden") == 1.0
    details = [
        (e["event"], e["detail"].get("reason"), e["detail"].get("subject")) for e in events(gw)
    ]
    assert details == [
        ("policy.unauthenticated", "expired", "alice"),
        ("policy.credential_revoked", "no iat", "alice"),
        ("policy.forbidden", None, "alice"),
    ]
    assert idp.fetches == 1
    assert expired not in (gw.config_file.parent / EVENTS).read_text()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_basic(gw: Gateway, pki: Pki, protocol: str) -> None:
    ok = call(gw, pki, protocol, "/basic", "-u", f"ops:{PASSWORD}")
    assert ok.status == 200
    assert ok.seen()["x-authenticated-identity"] == "basic:ops"
    assert "authorization" not in ok.seen()
    wrong = call(gw, pki, protocol, "/basic", "-u", "ops:guess")
    assert wrong.status == 401
    assert wrong.all("www-authenticate") == ['Basic realm="outwork", charset="UTF-8"']
    assert refused(gw, "basic", "unauthenticated") == 1.0
    (event,) = events(gw)
    assert event["detail"]["reason"] == "wrong password"
    assert "guess" not in json.dumps(event) and base64.b64encode(
        b"ops:guess"
    ).decode() not in json.dumps(event)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mtls_with_a_real_client_certificate(gw: Gateway, pki: Pki, protocol: str) -> None:
    cert = ("--cert", str(pki.client_cert), "--key", str(pki.client_key))
    ok = call(gw, pki, protocol, "/mtls", *cert)
    assert ok.status == 200
    assert ok.seen()["x-authenticated-identity"] == "mtls:CN=client.test"
    stranger = ("--cert", str(pki.stranger_cert), "--key", str(pki.stranger_key))
    for args in ((), stranger):  # none, and one the client CA does not vouch for
        assert call(gw, pki, protocol, "/mtls", *args).status == 401
    assert refused(gw, "mtls", "unauthenticated") == 2.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_access(gw: Gateway, pki: Pki, protocol: str) -> None:
    closed = call(gw, pki, protocol, "/closed", "-H", f"X-API-Key: {KEY}")
    assert closed.status == 403
    assert refused(gw, "closed", "access_denied") == 1.0
    (event,) = events(gw)
    assert event["event"] == "policy.access_denied" and event["detail"]["client"] == "127.0.0.1"


def test_the_jwks_rotates_under_a_running_gateway(gw: Gateway, pki: Pki, idp: JwksServer) -> None:
    assert call(gw, pki, "--http2", "/jwt", "-H", f"Authorization: Bearer {bearer()}").status == 200
    from cryptography.hazmat.primitives.asymmetric import ec

    new_key = ec.generate_private_key(ec.SECP256R1())
    idp.keys = [jwk_of(new_key, "rotated")]
    claims = {"sub": "bob", "iss": ISSUER, "aud": "api", "role": "partner",
              "iat": int(time.time()), "exp": int(time.time()) + 300}  # fmt: skip
    fresh = jwt.encode(claims, new_key, algorithm="ES256", headers={"kid": "rotated"})
    deadline = time.monotonic() + 30
    while True:  # the first refetch may come within jwks_refresh_min (5s) of the first fetch
        answer = call(gw, pki, "--http2", "/jwt", "-H", f"Authorization: Bearer {fresh}")
        if answer.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert answer.status == 200 and answer.seen()["x-authenticated-identity"] == "jwt:bob"
    assert idp.fetches == 2  # one refetch, however many tries fell within the rate limit
