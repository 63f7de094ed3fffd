"""A JWKS (RFC 7517 key set) fetched from an identity provider, cached, refetched with care.

The set is fetched on first use, again when a token names a `kid` the cache does not know (the
provider rotated its keys), and in the background once it is older than `max_age`; never more
than once per `refresh_min` (a client sending made-up kids must not turn the gateway into a
flood against the provider). The fetch runs in a thread (urllib; TLS with the system trust
store or the configured CA; plain http only to loopback, checked at load), with a timeout for
the whole fetch and a cap on the body; redirects and proxies are not followed. Requests that
wait for a fetch wait together (one fetch), and when it fails the keys known before stay.

Only public signature keys are kept: symmetric (`oct`) keys, private keys and keys whose `use`
is not `sig` are skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWKError, PyJWTError

MAX_KEYS = 64  # keys kept from one set: providers publish two or three
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class JwksError(Exception):
    """The set could not be fetched or read (the message is for the security event)."""


@dataclass(frozen=True, slots=True)
class JwksSource:
    url: str
    ssl_context: ssl.SSLContext | None  # None: plain http (loopback only)
    timeout: float  # seconds for the whole fetch
    max_size: int  # bytes of the body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is then an error: the configured URL is the one trusted


def fetch_jwks(source: JwksSource) -> bytes:
    """The set's bytes (blocking: run in a thread). Raises JwksError."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirect()]
    if source.ssl_context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=source.ssl_context))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(
        source.url, headers={"Accept": "application/json", "User-Agent": "outwork"}
    )
    deadline = time.monotonic() + source.timeout
    try:
        with opener.open(request, timeout=source.timeout) as response:
            if response.status != 200:
                raise JwksError(f"HTTP {response.status}")
            body = bytearray()
            while len(body) <= source.max_size:
                if time.monotonic() > deadline:
                    raise JwksError(f"not received within {source.timeout:g}s")
                chunk = response.read(16384)
                if not chunk:
                    return bytes(body)
                body += chunk
            raise JwksError(f"larger than {source.max_size} bytes")
    except urllib.error.HTTPError as exc:
        raise JwksError(f"HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:  # URLError, TLS, timeouts, malformed answers
        raise JwksError(f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class JwksKey:
    key: Any  # a cryptography public key
    alg: str | None  # the `alg` the set declares for it, if any


def parse_jwks(data: bytes) -> dict[str | None, JwksKey]:
    """The usable public signature keys of a set, by `kid` (None: a key without one).
    Raises JwksError for a body that is no key set."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise JwksError("not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksError("no `keys` list")
    result: dict[str | None, JwksKey] = {}
    for entry in keys[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            continue
        if entry.keys() & _PRIVATE or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            alg = entry.get("alg")
            result[kid] = JwksKey(PyJWK(entry).key, alg if isinstance(alg, str) else None)
        except (PyJWKError, PyJWTError, ValueError, TypeError, KeyError):
            continue  # a key type or curve this gateway does not take: the others stay
    return result


Waiter = Callable[[], None]
_threads: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The fetch threads of this process (made after a worker's fork: threads do not fork)."""
    global _threads
    if _threads is None or _threads[0] != os.getpid():
        _threads = (os.getpid(), ThreadPoolExecutor(2, thread_name_prefix="outwork-jwks"))
    return _threads[1]


class JwksCache:
    """One provider's keys for one process (shared by every request of the routes using it)."""

    def __init__(
        self,
        source: JwksSource,
        refresh_min: float,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[JwksSource], bytes] = fetch_jwks,
    ) -> None:
        self.source = source
        self.refresh_min = refresh_min
        self.max_age = max_age
        self.clock = clock
        self.fetch = fetch
        self.keys: dict[str | None, JwksKey] = {}
        self.fetched_at = -float("inf")  # the last successful fetch
        self.attempted_at = -float("inf")  # the last fetch started
        self.waiters: list[Waiter] | None = None  # while a fetch runs
        self.last_error = ""
        self.fetches = 0

    def key(self, kid: str | None) -> JwksKey | None:
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))  # one key and a token without kid: that one
        return self.keys.get(kid)

    def may_fetch(self) -> bool:
        """True when a fetch runs, or one may start now (`refresh_min` since the last)."""
        return self.waiters is not None or self.clock() - self.attempted_at >= self.refresh_min

    def stale(self) -> bool:
        return self.clock() - self.fetched_at >= self.max_age

    def refresh(self, then: Waiter | None = None) -> None:
        """Fetch (or join the fetch running); `then` is called on the loop when it ends."""
        if then is not None:
            if self.waiters is None:
                self.waiters = []
            self.waiters.append(then)
            if len(self.waiters) > 1:
                return
        elif self.waiters is not None:
            return
        else:
            self.waiters = []
        self.attempted_at = self.clock()
        self.fetches += 1
        loop = asyncio.get_running_loop()
        future = _pool().submit(self._fetch)

        def finished(result: Future[dict[str | None, JwksKey] | str]) -> None:
            try:
                loop.call_soon_threadsafe(self._done, result.result())
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                self.waiters = None

        future.add_done_callback(finished)

    def _fetch(self) -> dict[str | None, JwksKey] | str:
        try:
            return parse_jwks(self.fetch(self.source))
        except JwksError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the waiters get an answer
            return f"{type(exc).__name__}: {exc}"

    def _done(self, result: dict[str | None, JwksKey] | str) -> None:
        if isinstance(result, str):
            self.last_error = result
        else:
            self.keys = result
            self.fetched_at = self.clock()
            self.last_error = ""
        waiters, self.waiters = self.waiters or [], None
        for waiter in waiters:
            waiter()
