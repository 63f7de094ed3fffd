"""The `rate_limit` step's config schema (rate_limit.py is the step): msgspec Structs stay in an
interpreted module, as mypyc drops their class keywords (`forbid_unknown_fields`)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from outwork.filters.gcra import MAX_BURST, parse_rate

MAX_LIMITS = 16  # per policy
# `ipv6_prefix`: not wider than a /48 (a whole site: thousands of clients would share one budget).
Ipv6Prefix = Annotated[int, Meta(ge=48, le=128)]
_KEY = re.compile(r"^(client_address|api_key|jwt_subject|header:[!#$%&'*+\-.^_`|~0-9A-Za-z]+)$")


class LimitSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    key: str  # client_address, api_key, jwt_subject or header:NAME
    rate: str  # N/s, N/m, N/h, N/d
    burst: Annotated[int, Meta(ge=1, le=MAX_BURST)] | None = None  # default: the rate's N
    store: Literal["local", "redis"] = "local"
    on_store_error: Literal["allow", "deny"] = "allow"  # store: redis only
    # Also send the RateLimit fields on admitted responses (429s always carry them).
    response_headers: bool = False
    # key: client_address only: an IPv6 client counts by this prefix (default IPV6_PREFIX).
    ipv6_prefix: Ipv6Prefix | None = None

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(
                f"invalid key {self.key!r} (expected client_address, api_key, jwt_subject or"
                " header:NAME)"
            )
        parse_rate(self.rate)
        if self.ipv6_prefix is not None and self.key != "client_address":
            raise ValueError("ipv6_prefix goes with key: client_address only")


RateLimitSpec = Annotated[list[LimitSpec], Meta(min_length=1, max_length=MAX_LIMITS)]
