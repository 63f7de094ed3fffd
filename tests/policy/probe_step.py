"""A policy step type for the config tests only, written as the policy helpers write theirs
(a rate, networks, a secret: outwork.policy.values' types). Registered by `register()` (and
removed by `unregister()`) under the name `probe`: by a fixture in the test process, and by a
gateway started with `preload=__name__` (tests/conftest.py)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from outwork.filters import REGISTRY, Filter, FilterType
from outwork.filters import register as register_type
from outwork.policy.values import Cidr, Rate, Secret


class ProbeSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rate: Rate
    burst: Annotated[int, msgspec.Meta(ge=1)] = 1
    allow: list[Cidr] = msgspec.field(default_factory=list)
    token: Secret | None = None


class ProbeFilter(Filter):
    """Does nothing to a request: the tests look at what the config made of its spec."""

    __slots__ = ("spec",)

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec


TYPES = (FilterType("probe", ProbeSpec, ProbeFilter),)


def register() -> None:
    for filter_type in TYPES:
        register_type(filter_type)


def unregister() -> None:
    for filter_type in TYPES:
        REGISTRY.pop(filter_type.name, None)
