"""The `authorize` step's config schema (authorize.py is the step): msgspec Structs stay in an
interpreted module, as mypyc drops their class keywords (`forbid_unknown_fields`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Name = Annotated[str, Meta(min_length=1, max_length=256)]
ClaimValue = str | int | bool


class AuthorizeSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    scopes: Annotated[list[Name], Meta(max_length=256)] = []
    claims: Annotated[
        dict[Name, Annotated[list[ClaimValue], Meta(min_length=1, max_length=1024)]],
        Meta(max_length=64),
    ] = {}

    def __post_init__(self) -> None:
        if not self.scopes and not self.claims:
            raise ValueError("authorize needs `scopes` or `claims` (or both)")
