"""`headers`: response headers removed and added (`Server` and `X-Powered-By` out, `HSTS` in).

    policies: {baseline: {headers: {remove: [Server, X-Powered-By],
                                    add: {Strict-Transport-Security: "max-age=31536000"}}}}

An added header replaces any the upstream sent under that name. Framing and connection headers
are the gateway's own business and refused in the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec
from msgspec import Meta

from outwork.filters import CONTINUE, Filter, FilterType, RequestContext, Resume, Verdict, register
from outwork.http.messages import ResponseHead

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


class HeadersSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    remove: Annotated[list[HeaderName], Meta(max_length=MAX_HEADER_EDITS)] = msgspec.field(
        default_factory=list
    )
    add: Annotated[dict[HeaderName, HeaderValue], Meta(max_length=MAX_HEADER_EDITS)] = (
        msgspec.field(default_factory=dict)
    )

    def __post_init__(self) -> None:
        reserved = sorted({n.lower() for n in [*self.remove, *self.add]} & RESERVED)
        if reserved:
            raise ValueError(f"{reserved[0]} is the gateway's own header: a policy cannot set it")


@dataclass(frozen=True, slots=True)
class HeadersFilter(Filter):
    remove: frozenset[bytes]  # lower-case names, the added ones included (they replace)
    add: bytes  # the header lines added, each ending in CRLF

    def on_response_head(self, ctx: RequestContext, head: ResponseHead, resume: Resume) -> Verdict:
        remove = self.remove
        kept = [
            line
            for line in head.block.split(b"\r\n")
            if line and line.partition(b":")[0].strip().lower() not in remove
        ]
        head.block = b"".join(line + b"\r\n" for line in kept) + self.add
        return CONTINUE


def build(spec: HeadersSpec) -> HeadersFilter:
    added = {name.lower(): (name, value) for name, value in spec.add.items()}
    remove = frozenset(n.lower().encode() for n in spec.remove) | {n.encode() for n in added}
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in added.values())
    return HeadersFilter(remove, lines)


HEADERS = register(FilterType("headers", HeadersSpec, build))
