"""Fuzz target: what a client sends as a credential, into the parsers of `authenticate` and
through the filter itself.

    .venv/bin/python fuzz/fuzz_credentials.py /tmp/fuzz-cred fuzz/corpus/credentials

Byte 0 picks the mode (its low 2 bits) and, in mode 3, the header (bits 2-3):

  0  the rest is an Authorization value: `parse_authorization`, then `parse_basic` on its token
  1  the rest is a Basic token68: `parse_basic`
  2  the rest (latin-1) is a timestamp: `parse_rfc3339`, which may raise only ValueError
  3  the rest is a header value into an `authenticate` filter (api_key, then jwt with a JWKS
     already cached holding one fixed ES256 key): `Authorization: Bearer <rest>`,
     `Authorization: Basic <rest>`, `X-API-Key: <rest>` or `Authorization: <rest>`; the
     verdict must be CONTINUE (then the identity header is the only one added) or a 401

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from outwork.filters import CONTINUE, PolicyEnv, Reply
from outwork.filters.auth_jwt import JwtMethod
from outwork.filters.authenticate import AuthenticateSpec, build
from outwork.filters.credentials import parse_authorization, parse_basic
from outwork.filters.jwks import JwksKey
from outwork.filters.rfc3339 import parse_rfc3339
from outwork.http.messages import Framing, RequestHead

# A fixed key, so that a kept token stays valid: the seeds are signed with it.
KEY = ec.derive_private_key(0x0DDBA11, ec.SECP256R1())
NOW = 1_800_000_000.0
API_KEY = b"fuzz-api-key"
_SPEC = [
    {"api_key": {"keys": [{"id": "k1", "hash": "sha256:" + hashlib.sha256(API_KEY).hexdigest()}]}},
    {
        "jwt": {
            "jwks_url": "http://127.0.0.1:9/jwks.json",  # never fetched: the cache is filled
            "issuer": "https://idp/",
            "audience": "api",
            "algorithms": ["ES256", "RS256", "EdDSA"],
            "jwks_refresh_min": "1d",
        }
    },
]
FILTER = build(msgspec.convert(_SPEC, AuthenticateSpec, strict=True), PolicyEnv(Path(".")))
_jwt = FILTER.methods[1]
assert isinstance(_jwt, JwtMethod)
_jwt.jwks.keys = {"fuzz": JwksKey(KEY.public_key(), "ES256")}
_jwt.jwks.attempted_at = _jwt.jwks.clock()  # and no fetch is due for a day
HEADERS = (b"Authorization", b"Authorization", b"X-API-Key", b"Authorization")
PREFIXES = (b"Bearer ", b"Basic ", b"", b"")


class _Context:
    client_ip = "127.0.0.1"
    peer = "127.0.0.1:1"
    listener_name = "fuzz"
    route_name = "fuzz"
    client_certificate = None
    now = NOW

    def __init__(self) -> None:
        self.identity: Any = None
        self.filter_state: dict[int, Any] = {}

    def security_event(self, event: str, detail: dict[str, Any]) -> None:
        pass


def _through_filter(header: int, value: bytes) -> None:
    name, value = HEADERS[header], PREFIXES[header] + value
    head = RequestHead(
        b"GET", b"/", "1.1", [(name, value)], name + b": " + value + b"\r\n",
        Framing.NONE, -1, True, False,
    )  # fmt: skip
    ctx = _Context()
    verdict = FILTER.on_request_head(ctx, head, lambda v: None)
    if verdict is CONTINUE:
        assert ctx.identity is not None
        lines = [line for line in head.block.split(b"\r\n") if line]
        assert len(lines) == 1 and lines[0].startswith(b"X-Authenticated-Identity: ")
        return
    assert isinstance(verdict, Reply) and verdict.status == 401, verdict
    assert ctx.identity is None


def TestOneInput(data: bytes) -> None:  # noqa: N802 (the name atheris and libFuzzer use)
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode & 3 == 0:
        parsed = parse_authorization(rest)
        if parsed is not None and parsed[0] == b"basic":
            parse_basic(parsed[1])
    elif mode & 3 == 1:
        parse_basic(rest)
    elif mode & 3 == 2:
        try:
            parse_rfc3339(rest.decode("latin-1"))
        except ValueError:
            pass
    else:
        _through_filter((mode >> 2) & 3, rest)


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
