"""The `authenticate` step's config schema (authenticate.py is the step): msgspec Structs stay
in an interpreted module, as mypyc drops their class keywords (`forbid_unknown_fields`)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from outwork.filters.auth_apikey_spec import ApiKeySpec
from outwork.filters.auth_basic import BasicSpec
from outwork.filters.auth_jwt import JwtSpec
from outwork.filters.auth_mtls import MtlsSpec

MAX_METHODS = 8


class MethodSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One list entry: exactly one of the methods."""

    api_key: ApiKeySpec | None = None
    jwt: JwtSpec | None = None
    basic: BasicSpec | None = None
    mtls: MtlsSpec | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("api_key", "jwt", "basic", "mtls") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "each authenticate entry is one of api_key, jwt, basic, mtls"
                + (f" (this one has {', '.join(given)})" if given else "")
            )


AuthenticateSpec = Annotated[list[MethodSpec], Meta(min_length=1, max_length=MAX_METHODS)]
