"""`authorize` in-process: every scope required, claims matched by value or list membership
(types kept apart), 403 FORBIDDEN naming what was missing, 401 without an identity."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from outwork.filters import CONTINUE, Identity, Reply
from outwork.filters.authorize import AuthorizeSpec, build
from outwork.observe.refusals import Refusal
from tests.filters.fake import FakeContext, request, run_head


def verdict(spec: dict[str, Any], identity: Identity | None) -> Any:
    f = build(msgspec.convert(spec, AuthorizeSpec, strict=True))
    return run_head(f, FakeContext(identity=identity), request())


def jwt_identity(**claims: Any) -> Identity:
    return Identity("jwt", "alice", frozenset(claims.pop("scopes", ())), claims)


def test_scopes_all_required() -> None:
    spec = {"scopes": ["read", "write"]}
    assert verdict(spec, jwt_identity(scopes={"read", "write", "x"})) is CONTINUE
    reply = verdict(spec, jwt_identity(scopes={"read"}))
    assert reply == Reply(
        403, Refusal.FORBIDDEN, detail={"subject": "alice", "missing_scopes": ["write"]}
    )
    api_key = Identity("api_key", "k1", frozenset({"read", "write"}), {}, "acme")
    assert verdict(spec, api_key) is CONTINUE


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [
        ({"role": "admin"}, True),
        ({"role": ["user", "admin"]}, True),
        ({"role": "user"}, False),
        ({"role": ["user"]}, False),
        ({}, False),
        ({"role": {"admin": True}}, False),
        ({"role": [["admin"]]}, False),
    ],
)
def test_claims_by_value_or_list_membership(claims: dict[str, Any], allowed: bool) -> None:
    reply = verdict({"claims": {"role": ["admin"]}}, jwt_identity(**claims))
    if allowed:
        assert reply is CONTINUE
    else:
        assert reply == Reply(403, Refusal.FORBIDDEN, detail={"subject": "alice", "claim": "role"})


def test_claim_types_are_not_mixed() -> None:
    assert verdict({"claims": {"level": [1]}}, jwt_identity(level=1)) is CONTINUE
    assert isinstance(verdict({"claims": {"level": [1]}}, jwt_identity(level=True)), Reply)
    assert isinstance(verdict({"claims": {"admin": [True]}}, jwt_identity(admin=1)), Reply)
    assert isinstance(verdict({"claims": {"level": ["1"]}}, jwt_identity(level=1)), Reply)


def test_both_scopes_and_claims_must_hold() -> None:
    spec = {"scopes": ["read"], "claims": {"tenant": ["acme"]}}
    assert verdict(spec, jwt_identity(scopes={"read"}, tenant="acme")) is CONTINUE
    assert isinstance(verdict(spec, jwt_identity(scopes={"read"}, tenant="other")), Reply)
    assert isinstance(verdict(spec, jwt_identity(tenant="acme")), Reply)


def test_without_an_identity_401() -> None:
    reply = verdict({"scopes": ["read"]}, None)
    assert reply == Reply(401, Refusal.UNAUTHENTICATED, detail={"reason": "no identity"})


@pytest.mark.parametrize(
    "spec", [{}, {"scopes": []}, {"claims": {"role": []}}, {"roles": ["admin"]}]
)
def test_config_mistakes(spec: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(spec, AuthorizeSpec, strict=True)
