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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outwork.http.messages import RequestHead, ResponseHead
from outwork.observe.refusals import Refusal


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on."""


CONTINUE = Continue()


@dataclass(frozen=True, slots=True)
class Stop:
    """Wait: the filter calls the `resume` callback it was given when it is done."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the request now with the gateway's own response."""

    status: int
    refusal: Refusal | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None  # None: the gateway's plain-text body for `status`


Verdict = Continue | Stop | Reply
Resume = Callable[[Verdict], None]


class Filter:
    """A step of a route's chain. Every hook continues unless a filter says otherwise."""

    __slots__ = ()

    def on_request_head(self, head: RequestHead, resume: Resume) -> Verdict:
        return CONTINUE

    def on_request_body(self, chunk: bytes, end: bool, resume: Resume) -> Verdict:
        return CONTINUE

    def on_response_head(self, head: ResponseHead, resume: Resume) -> Verdict:
        return CONTINUE

    def on_response_body(self, chunk: bytes, end: bool, resume: Resume) -> Verdict:
        return CONTINUE


@dataclass(frozen=True, slots=True)
class FilterType:
    name: str  # the key under a policy: `policies: {NAME: {<name>: {...}}}`
    schema: type[Any]  # a msgspec Struct the key's value is converted to (strictly)
    build: Callable[[Any], Filter]  # from the converted spec to the filter


REGISTRY: dict[str, FilterType] = {}


def register(filter_type: FilterType) -> FilterType:
    if filter_type.name in REGISTRY:
        raise ValueError(f"filter type {filter_type.name!r} registered twice")
    REGISTRY[filter_type.name] = filter_type
    return filter_type
