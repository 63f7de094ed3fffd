"""The issue's policy through `load_config`: it compiles into the chain access, authenticate,
authorize; `revocation.not_before` reaches the filters; mistakes are line-numbered problems."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from outwork.config.load import load_config
from outwork.config.source import ConfigError
from outwork.filters.access import AccessFilter
from outwork.filters.auth_apikey import ApiKeyMethod
from outwork.filters.auth_jwt import JwtMethod
from outwork.filters.authenticate import AuthenticateFilter
from outwork.filters.authorize import AuthorizeFilter
from outwork.filters.rfc3339 import parse_rfc3339
from tests.filters.test_authenticate import ARGON2


def config(policy: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "upstreams": {"api": {"targets": ["http://127.0.0.1:9"]}},
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "api", "policies": ["partners"]}],
        "policies": {"partners": policy},
        **top,
    }


ISSUE_POLICY: dict[str, Any] = {
    # Written in another order than the chain runs it.
    "authorize": {"scopes": ["read"]},
    "authenticate": [
        {
            "api_key": {
                "header": "X-API-Key",
                "keys": [
                    {
                        "id": "k1",
                        "hash": "sha256:" + hashlib.sha256(b"k").hexdigest(),
                        "owner": "acme",
                        "scopes": ["read"],
                    }
                ],
            }
        },
        {
            "jwt": {
                "jwks_url": "https://idp/jwks.json",
                "issuer": "https://idp/",
                "audience": "api",
                "algorithms": ["RS256", "ES256"],
                "leeway": "30s",
            }
        },
        {"basic": {"users": [{"name": "ops", "hash": ARGON2}]}},
        {"mtls": {"subjects": ["CN=partner-*"]}},
    ],
    "access": {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.6.6.0/24"]},
}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_issue_policy_compiles_in_chain_order(tmp_path: Path) -> None:
    revocation = {"not_before": "2026-12-06T22:00:00Z"}
    loaded = load_config(write(tmp_path, config(ISSUE_POLICY, revocation=revocation)))
    access, authenticate, authorize = loaded.routes[0].filters
    assert isinstance(access, AccessFilter) and isinstance(authorize, AuthorizeFilter)
    assert isinstance(authenticate, AuthenticateFilter)
    assert [m.kind for m in authenticate.methods] == ["api_key", "jwt", "basic", "mtls"]
    instant = parse_rfc3339("2026-12-06T22:00:00Z")
    assert loaded.revoked_before == instant
    api_key, jwt_method = authenticate.methods[:2]
    assert isinstance(api_key, ApiKeyMethod) and api_key.revoked_before == instant
    assert isinstance(jwt_method, JwtMethod) and jwt_method.revoked_before == instant
    assert jwt_method.leeway == 30.0


def test_without_revocation_nothing_is_revoked(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, config(ISSUE_POLICY)))
    assert loaded.revoked_before is None


@pytest.mark.parametrize(
    ("edit", "line_text", "message"),
    [
        (lambda p: p["access"].update(deny=["10.6.6.1/24"]), "allow:", "did you mean 10.6.6.0/24"),
        (
            lambda p: p["authenticate"][1]["jwt"].update(algorithms=["HS256"]),
            "algorithms:",
            "a public key is no HMAC secret",
        ),
        (
            lambda p: p["authenticate"][0]["api_key"]["keys"][0].update(hash="k1"),
            "hash: k1",
            "sha256",
        ),
        (lambda p: p["authenticate"].append({"saml": {}}), "saml", "unknown key"),
        (
            lambda p: p["authenticate"][1]["jwt"].update(jwks_url="http://idp/jwks.json"),
            "algorithms:",  # the line of the entry (its check spans keys)
            "plain http only to loopback",
        ),
    ],
)
def test_mistakes_are_line_numbered(
    tmp_path: Path, edit: Any, line_text: str, message: str
) -> None:
    policy = yaml.safe_load(yaml.safe_dump(ISSUE_POLICY))
    edit(policy)
    path = write(tmp_path, config(policy))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert message in problem.message
    lines = path.read_text().splitlines()
    assert problem.line is not None and line_text in lines[problem.line - 1], problem


def test_a_bad_revocation_instant_is_a_problem_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, config(ISSUE_POLICY, revocation={"not_before": "2026-12-06 22:00"}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.path == "revocation.not_before" and "RFC 3339" in problem.message
    lines = path.read_text().splitlines()
    assert problem.line is not None and "not_before" in lines[problem.line - 1]


def test_a_jwks_ca_that_cannot_be_read_is_a_problem(tmp_path: Path) -> None:
    policy = yaml.safe_load(yaml.safe_dump(ISSUE_POLICY))
    policy["authenticate"][1]["jwt"]["ca"] = "missing-ca.pem"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, config(policy)))
    (problem,) = caught.value.problems
    assert "missing-ca.pem" in problem.message


def test_the_registry_keeps_chain_order_whatever_is_imported_first() -> None:
    from outwork.filters import CHAIN_ORDER, REGISTRY, FilterType, register

    known = [name for name in REGISTRY if name in CHAIN_ORDER]
    assert known == [name for name in CHAIN_ORDER if name in REGISTRY]
    assert known[:4] == ["access", "headers", "authenticate", "authorize"]
    extra = register(FilterType("test_auth_extra", dict, lambda spec: None))  # type: ignore[arg-type, return-value]
    try:
        assert list(REGISTRY)[-1] == "test_auth_extra"  # an unknown type runs after the chain
    finally:
        del REGISTRY[extra.name]
