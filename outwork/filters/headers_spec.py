"""The `headers` step's config schema (headers.py is the step): msgspec Structs stay in an
interpreted module, as mypyc drops their class keywords (`forbid_unknown_fields`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

# Names and values as RFC 9110 5.1 and 5.5 allow them (a value: no CR, LF or NUL, no edge space).
TOKEN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
FIELD_VALUE = r"^([\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$"
MAX_HEADER_EDITS = 64  # names removed, and headers added, per policy
# Headers whose meaning is the gateway's (framing, hop by hop): no policy touches them.
RESERVED = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-request-id",
    }
)

HeaderName = Annotated[str, Meta(pattern=TOKEN, max_length=256)]
HeaderValue = Annotated[str, Meta(pattern=FIELD_VALUE, max_length=4096)]
# An origin as browsers send it (RFC 6454 serialisation: scheme, host, port unless default),
# or "*"; never "null" (sandboxed frames and local files all send that one).
ORIGIN = r"^(\*|[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?)$"
MAX_CORS_ITEMS = 256  # origins, methods, headers, exposed headers: each
CORS_RESPONSE = frozenset(
    {
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
    }
)


class CorsSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    origins: Annotated[
        list[Annotated[str, Meta(pattern=ORIGIN, max_length=512)]],
        Meta(min_length=1, max_length=MAX_CORS_ITEMS),
    ]
    methods: Annotated[list[HeaderName], Meta(min_length=1, max_length=MAX_CORS_ITEMS)] = (
        msgspec.field(default_factory=lambda: ["GET", "HEAD", "POST"])
    )
    headers: Annotated[list[HeaderName], Meta(max_length=MAX_CORS_ITEMS)] = msgspec.field(
        default_factory=list
    )
    expose: Annotated[list[HeaderName], Meta(max_length=MAX_CORS_ITEMS)] = msgspec.field(
        default_factory=list
    )
    credentials: bool = False
    max_age: Annotated[int, Meta(ge=0, le=86400)] = 600  # seconds a browser may keep a preflight

    def __post_init__(self) -> None:
        if "*" in self.origins:
            if len(self.origins) > 1:
                raise ValueError('origins: "*" stands alone (it allows every origin)')
            if self.credentials:
                raise ValueError('origins: "*" cannot go with credentials: true (browsers refuse)')


class HeadersSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    remove: Annotated[list[HeaderName], Meta(max_length=MAX_HEADER_EDITS)] = msgspec.field(
        default_factory=list
    )
    add: Annotated[dict[HeaderName, HeaderValue], Meta(max_length=MAX_HEADER_EDITS)] = (
        msgspec.field(default_factory=dict)
    )
    cors: CorsSpec | None = None

    def __post_init__(self) -> None:
        reserved = sorted({n.lower() for n in [*self.remove, *self.add]} & RESERVED)
        if reserved:
            raise ValueError(f"{reserved[0]} is the gateway's own header: a policy cannot set it")
        if self.cors is not None:
            clash = sorted({n.lower() for n in self.add} & CORS_RESPONSE)
            if clash:
                raise ValueError(f"{clash[0]} is set by cors: add cannot set it too")
