"""The `threat_protection` step's config schema (threat.py is the step): msgspec Structs stay
in an interpreted module, as mypyc drops their class keywords (`forbid_unknown_fields`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from outwork.config.values import parse_size

Size = str | int  # as `outwork.config.schema.Size`: "1MiB", "512KiB" or a number of bytes


def _size(value: Size) -> int:
    return parse_size(value)


class JsonSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_depth: Annotated[int, Meta(ge=1, le=10_000)] = 20
    max_keys: Annotated[int, Meta(ge=1, le=10_000_000)] = 1000
    max_string: Annotated[int, Meta(ge=1, le=1 << 30)] = 65536
    max_array: Annotated[int, Meta(ge=1, le=10_000_000)] = 10000
    max_number: Annotated[int, Meta(ge=1, le=10_000)] = 100
    max_size: Size | None = None  # default: only the route's max_body_size

    def __post_init__(self) -> None:
        if self.max_size is not None:
            _size(self.max_size)  # ValueError: reported at the key


class XmlSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_depth: Annotated[int, Meta(ge=1, le=10_000)] = 20
    max_size: Size = "1MiB"

    def __post_init__(self) -> None:
        _size(self.max_size)


class ThreatSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    json: JsonSpec | None = None
    xml: XmlSpec | None = None
    other_types: Literal["allow", "refuse"] = "allow"

    def __post_init__(self) -> None:
        if self.json is None and self.xml is None:
            raise ValueError("names nothing to check: give json, xml or both")
