"""`authenticate: - basic`: user names and argon2 password hashes (RFC 7617 Basic).

    - basic: {users: [{name: ops, hash: "$argon2id$v=19$m=65536,t=3,p=4$...", scopes: [admin]}]}

An argon2 check costs tens of milliseconds by design, so it never runs on the event loop: it
runs in a small thread pool (the request waits, `Stop`) and the result comes back to the loop
with `call_soon_threadsafe`. A user name that does not exist is checked against a dummy hash
of the same cost, so the answer's timing does not tell which users exist. A successful check
is remembered for `cache_ttl` under an HMAC of (user, password) with a key made at start: the
password itself is kept nowhere. `must_change_password: true` refuses the user after a correct
password (401, `Refusal.CREDENTIAL_REVOKED`). `outwork hash password` prints an argon2id hash
of a password read from stdin.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated

import msgspec
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from msgspec import Meta

from outwork.filters import Identity, RequestContext
from outwork.filters.auth_method import Done, Failure, Method, Outcome, authorization_scheme
from outwork.filters.auth_method_spec import MethodOptions, Realm
from outwork.filters.credentials import header_values, parse_authorization, parse_basic
from outwork.http.messages import RequestHead
from outwork.observe.refusals import Refusal

MAX_USERS = 10_000
# Argon2 checks waiting or running at once, per `basic` entry (and process). Beyond, a request
# is refused at once: a flood of wrong passwords must not queue without bound (each costs tens
# of ms of a core).
MAX_PENDING = 64
THREADS = 2  # argon2 is CPU-bound: more threads than cores only queue in the kernel
MAX_CACHED = 10_000  # remembered verifications; the oldest half is dropped beyond
Name = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^:\x00-\x1f\x7f]+$")]


class BasicUser(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    hash: Annotated[str, Meta(pattern=r"^\$argon2(id|i|d)\$", max_length=1024)]
    scopes: Annotated[list[Name], Meta(max_length=256)] = []
    must_change_password: bool = False

    def __post_init__(self) -> None:
        try:
            extract_parameters(self.hash)
        except InvalidHashError:
            raise ValueError(f"basic: user {self.name!r}: not an argon2 hash") from None


class BasicSpec(MethodOptions, kw_only=True):
    users: Annotated[list[BasicUser], Meta(min_length=1, max_length=MAX_USERS)]
    realm: Realm = "outwork"
    # Seconds a verified (user, password) is remembered; from the config as a duration.
    cache_ttl: str | int | float = "30s"

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [user.name for user in self.users]
        if len(set(names)) != len(names):
            raise ValueError("basic: duplicate user name")


_executor: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The argon2 threads of this process (made after a worker's fork: threads do not fork)."""
    global _executor
    if _executor is None or _executor[0] != os.getpid():
        _executor = (os.getpid(), ThreadPoolExecutor(THREADS, thread_name_prefix="outwork-argon2"))
    return _executor[1]


def _check(hasher: PasswordHasher, hash_: str, password: str) -> bool:
    try:
        return hasher.verify(hash_, password)
    except (VerificationError, InvalidHashError):
        return False


class BasicMethod(Method):
    __slots__ = ("users", "realm", "ttl", "hasher", "dummy", "key", "verified", "pending")
    kind = "basic"
    credential_headers = frozenset({b"authorization"})

    def __init__(self, spec: BasicSpec, ttl: float) -> None:
        super().__init__(spec)
        self.users = {user.name: user for user in spec.users}
        self.realm = spec.realm.encode()
        self.ttl = ttl
        self.hasher = PasswordHasher()
        # Same cost as the first user's hash: an unknown user takes as long as a known one.
        params = extract_parameters(spec.users[0].hash)
        self.dummy = PasswordHasher.from_parameters(params).hash(secrets.token_hex(16))
        self.key = secrets.token_bytes(32)
        self.verified: dict[bytes, float] = {}  # HMAC(user, password) -> valid until
        self.pending = 0

    def challenge(self, failed: bool) -> bytes:
        return b'Basic realm="' + self.realm + b'", charset="UTF-8"'

    def present(self, ctx: RequestContext, head: RequestHead) -> bool:
        return authorization_scheme(head) == b"basic"

    def _tag(self, user: str, password: str) -> bytes:
        user_bytes = user.encode()
        message = len(user_bytes).to_bytes(4, "big") + user_bytes + password.encode()
        return hmac.new(self.key, message, hashlib.sha256).digest()

    def verify(self, ctx: RequestContext, head: RequestHead, done: Done) -> Outcome | None:
        values = header_values(head, b"authorization")
        parsed = parse_authorization(values[0]) if len(values) == 1 else None
        credentials = None if parsed is None else parse_basic(parsed[1])
        if credentials is None:
            return Failure("malformed Basic credentials")
        user_name, password = credentials
        user = self.users.get(user_name)
        tag = self._tag(user_name, password)
        now = ctx.now
        if user is not None and self.verified.get(tag, 0.0) > now:
            return self._identity(user)
        if self.pending >= MAX_PENDING:
            return Failure("too many password checks in progress", {"user": user_name[:64]})
        loop = asyncio.get_running_loop()
        self.pending += 1
        hash_ = self.dummy if user is None else user.hash
        future = _pool().submit(_check, self.hasher, hash_, password)

        def checked(ok: bool) -> None:
            self.pending -= 1
            if user is None or not ok:
                reason = "unknown user" if user is None else "wrong password"
                done(Failure(reason, {"user": user_name[:64]}))
                return
            if len(self.verified) >= MAX_CACHED:
                self._prune(ctx.now)
            self.verified[tag] = ctx.now + self.ttl
            done(self._identity(user))

        def finished(result: Future[bool]) -> None:
            ok = result.exception() is None and result.result()
            try:
                loop.call_soon_threadsafe(checked, ok)
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                pass

        future.add_done_callback(finished)
        return None

    def _prune(self, now: float) -> None:
        live = sorted((until, tag) for tag, until in self.verified.items() if until > now)
        self.verified = {tag: until for until, tag in live[len(live) // 2 :]}

    def _identity(self, user: BasicUser) -> Outcome:
        if user.must_change_password:
            return Failure("must change password", {"user": user.name}, Refusal.CREDENTIAL_REVOKED)
        return Identity("basic", user.name, frozenset(user.scopes))
