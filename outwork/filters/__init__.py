"""The filter API (after Envoy's `envoy/http/filter.h`): what a policy step may do to an exchange.

A `Filter` sees the request head, the request body chunk by chunk, the response head and the
response body chunk by chunk; each hook returns one `Verdict`:

- `CONTINUE`: go on to the next filter (and, after the last one, on with the exchange);
- `Stop()`: park the exchange in its waiting state (`exchange_state.FILTERING_*`, reading the
  client paused) until the filter calls the `resume` callback it was given;
- `Reply(status, headers, body, refusal)`: answer now, through `local_reply`, counting the
  refusal reason (a member of the closed `Refusal` enum).

Filter types are registered by name with a msgspec schema and a build function
(`FilterType`); `compile_policy` builds each policy's chain once, at config load, and routes
hold the compiled filters (`RouteConfig.filters`), default policies first. Filters are
immutable values built from the config: per-exchange state, if a filter needs any, lives with
the exchange, never on the filter.

The types a filter meets per request live in `api.py` (compiled with mypyc; a compiled package
`__init__` would get a wrong `__path__`) and are re-exported here; a step's config schema lives
in its `*_spec.py` (interpreted: mypyc drops a msgspec Struct's `forbid_unknown_fields`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outwork.filters.api import (
    CONTINUE,
    Continue,
    Filter,
    Identity,
    Reply,
    RequestContext,
    Resume,
    Stop,
    Verdict,
)

if TYPE_CHECKING:
    from outwork.config.config import RedisConfig

__all__ = [
    "CHAIN_ORDER",
    "CONTINUE",
    "REGISTRY",
    "Continue",
    "Filter",
    "FilterType",
    "Identity",
    "PolicyEnv",
    "Reply",
    "RequestContext",
    "Resume",
    "Stop",
    "Verdict",
    "register",
]


@dataclass(frozen=True, slots=True)
class PolicyEnv:
    """What a step's build may need beyond its own spec: the config's gateway-wide settings."""

    base: Path = Path(".")  # the config file's directory: relative paths (a JWKS `ca`) start here
    # `revocation.not_before` (seconds since the epoch): credentials issued before it are refused.
    revoked_before: float | None = None
    redis: RedisConfig | None = None  # the `redis:` section (rate limits with `store: redis`)


@dataclass(frozen=True, slots=True)
class FilterType:
    name: str  # the key under a policy: `policies: {NAME: {<name>: {...}}}`
    # A msgspec Struct the key's value is converted to (strictly; every problem on its line,
    # unknown keys with "did you mean"). Fields may be typed with outwork.config.values' Rate,
    # Cidr and Secret (`10/s`, `10.0.0.0/8`, `env:NAME`), checked and read at load.
    schema: type[Any]
    build: Callable[[Any], Filter]  # from the converted spec to the filter
    # Used instead of `build` when set, for steps that need the gateway-wide settings; a
    # ValueError it raises is a config problem at the step's key.
    build_in_env: Callable[[Any, PolicyEnv], Filter] | None = None


REGISTRY: dict[str, FilterType] = {}  # in chain order
# The order a chain runs the policy steps in (steps.py says why), whichever module happens to be
# imported first (a test or a tool may import one step before steps.py); a type not named here
# runs after these, in the order it was registered.
CHAIN_ORDER = (
    "access",
    "headers",
    "authenticate",
    "authorize",
    "rate_limit",
    "threat_protection",
    "waf",
)


def _chain_rank(filter_type: FilterType) -> int:
    name = filter_type.name
    return CHAIN_ORDER.index(name) if name in CHAIN_ORDER else len(CHAIN_ORDER)


def register(filter_type: FilterType) -> FilterType:
    if filter_type.name in REGISTRY:
        raise ValueError(f"filter type {filter_type.name!r} registered twice")
    REGISTRY[filter_type.name] = filter_type
    ordered = sorted(REGISTRY.values(), key=_chain_rank)  # stable: the others keep their order
    REGISTRY.clear()
    REGISTRY.update((t.name, t) for t in ordered)
    return filter_type
