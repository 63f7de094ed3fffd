"""A policy step type for the config tests only, written as the policy helpers write theirs
(a rate, networks, a secret: outwork.config.values' types). Registered by `register()` (and
removed by `unregister()`) under the name `probe`: by a fixture in the test process, and by a
gateway started with `preload=__name__` (tests/conftest.py)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec

from outwork.config.values import Cidr, Rate, Secret
from outwork.filters import (
    CONTINUE,
    REGISTRY,
    Filter,
    FilterType,
    Reply,
    RequestContext,
    Resume,
    Verdict,
)
from outwork.filters import register as register_type
from outwork.http.messages import RequestHead
from outwork.observe.refusals import Refusal


class ProbeSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rate: Rate
    burst: Annotated[int, msgspec.Meta(ge=1)] = 1
    allow: list[Cidr] = msgspec.field(default_factory=list)
    token: Secret | None = None


class ProbeFilter(Filter):
    """403 for a client whose address is in none of `allow` (when it lists any), so that a
    test sees which policy a gateway runs; the tests also look at what the config made of
    its spec."""

    __slots__ = ("spec",)

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        if not self.spec.allow:
            return CONTINUE
        address = ipaddress.ip_address(ctx.client_ip)
        if any(address in cidr for cidr in self.spec.allow):
            return CONTINUE
        return Reply(403, Refusal.ACCESS_DENIED, detail={"step": "probe"})


TYPES = (FilterType("probe", ProbeSpec, ProbeFilter),)


def register() -> None:
    for filter_type in TYPES:
        register_type(filter_type)


def unregister() -> None:
    for filter_type in TYPES:
        REGISTRY.pop(filter_type.name, None)
