"""The `api_key` method's config schema (auth_apikey.py is the method): msgspec Structs stay
in an interpreted module, as mypyc drops their class keywords (`forbid_unknown_fields`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from outwork.filters.auth_method_spec import HeaderName, MethodOptions, check_header
from outwork.filters.rfc3339 import parse_rfc3339

MAX_KEYS = 100_000
KeyHash = Annotated[str, Meta(pattern=r"^sha256:[0-9a-fA-F]{64}$")]
Name = Annotated[str, Meta(min_length=1, max_length=256)]


class ApiKeyEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: Name
    hash: KeyHash
    owner: Annotated[str, Meta(max_length=256)] = ""
    scopes: Annotated[list[Name], Meta(max_length=256)] = msgspec.field(default_factory=list)
    created: str | None = None  # RFC 3339
    revoked: bool = False

    def __post_init__(self) -> None:
        if self.created is not None:
            parse_rfc3339(self.created)


class ApiKeySpec(MethodOptions, kw_only=True):
    header: HeaderName = "X-API-Key"
    keys: Annotated[list[ApiKeyEntry], Meta(min_length=1, max_length=MAX_KEYS)]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_header(self.header, "header")
        if self.header.lower() == self.identity_header.lower():
            raise ValueError("api_key: `header` and `identity_header` must differ")
        ids: set[str] = set()
        hashes: set[str] = set()
        for key in self.keys:
            if key.id in ids:
                raise ValueError(f"api_key: duplicate key id {key.id!r}")
            if key.hash.lower() in hashes:
                raise ValueError(f"api_key: key {key.id!r} has the hash of another key")
            ids.add(key.id)
            hashes.add(key.hash.lower())
