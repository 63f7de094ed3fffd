"""`authenticate: - api_key`: a key in a header, known to the gateway only by its SHA-256.

    - api_key: {header: X-API-Key, keys: [{id: k1, hash: "sha256:HEX", owner: acme,
                                            scopes: [read], created: "2026-01-05T00:00:00Z"}]}

A key is looked up by its hash (a dict), and the stored hash compared to the computed one in
constant time. `revoked: true` refuses a key (401, `Refusal.CREDENTIAL_REVOKED`); so does
`revocation.not_before` for a key created before it or without `created`. `outwork hash
api-key` prints the hash of a key read from stdin.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from outwork.filters.api import Identity, RequestContext
from outwork.filters.auth_apikey_spec import ApiKeySpec
from outwork.filters.auth_method import Done, Failure, Method, Outcome
from outwork.filters.credentials import MAX_CREDENTIAL, header_values
from outwork.filters.rfc3339 import parse_rfc3339
from outwork.http.messages import RequestHead
from outwork.observe.refusals import Refusal

# The SHA-256 a presented key is hashed with on every request: CPython's own (3.11: `_sha256`,
# 3.12 on: `_sha2`), not hashlib's OpenSSL one: its per-call setup (an EVP context made,
# copied for `digest` and freed) made a key's hash cost about 5,600 instructions, against 4,200.
# The same digest (tests/filters/test_authenticate.py); hashlib's where CPython was built
# without them.
try:
    from _sha2 import sha256 as request_sha256  # type: ignore[import-not-found]
except ImportError:
    try:
        from _sha256 import sha256 as request_sha256  # type: ignore[import-not-found, no-redef]
    except ImportError:
        request_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    digest: bytes  # SHA-256 of the key
    identity: Identity
    created: float | None
    revoked: bool


def key_hash(key: bytes) -> str:
    """What the config stores for a key: `sha256:` and the hex digest."""
    return "sha256:" + hashlib.sha256(key).hexdigest()


class ApiKeyMethod(Method):
    __slots__ = ("header", "by_digest", "revoked_before")

    def __init__(self, spec: ApiKeySpec, revoked_before: float | None) -> None:
        super().__init__(spec)
        self.header = spec.header.lower().encode()
        self.revoked_before = revoked_before
        self.by_digest: dict[bytes, ApiKey] = {}
        for entry in spec.keys:
            digest = bytes.fromhex(entry.hash[len("sha256:") :])
            identity = Identity("api_key", entry.id, frozenset(entry.scopes), {}, entry.owner)
            created = None if entry.created is None else parse_rfc3339(entry.created)
            self.by_digest[digest] = ApiKey(entry.id, digest, identity, created, entry.revoked)

    @property
    def kind(self) -> str:
        return "api_key"

    @property
    def credential_headers(self) -> frozenset[bytes]:
        return frozenset({self.header})

    def challenge(self, failed: bool) -> bytes:
        return b"ApiKey header=" + self.header

    def present(self, ctx: RequestContext, head: RequestHead) -> bool:
        header = self.header
        size = len(header)  # a name of another length is not lower-cased
        for key, _ in head.headers:
            if len(key) == size and key.lower() == header:
                return True
        return False

    def verify(self, ctx: RequestContext, head: RequestHead, done: Done) -> Outcome:
        values = header_values(head, self.header)
        if len(values) != 1:
            return Failure("several API key headers")
        value = values[0].strip(b" \t")
        if not value or len(value) > MAX_CREDENTIAL:
            return Failure("malformed API key")
        digest = request_sha256(value).digest()
        key = self.by_digest.get(digest)
        if key is None or not hmac.compare_digest(key.digest, digest):
            return Failure("unknown API key")
        if key.revoked:
            return Failure("revoked", {"key_id": key.id}, Refusal.CREDENTIAL_REVOKED)
        if self.revoked_before is not None and (
            key.created is None or key.created < self.revoked_before
        ):
            reason = "created before revocation.not_before"
            if key.created is None:
                reason = "no `created` time, and revocation.not_before is set"
            return Failure(reason, {"key_id": key.id}, Refusal.CREDENTIAL_REVOKED)
        return key.identity
