"""The access log: one JSON object per answered request, one line each.

    {"time":"2026-11-29T07:30:00.123Z","request_id":"5f0c2a9e41d7-1a","client":"127.0.0.1:50522",
     "listener":"public","proto":"http/1.1","tls_ms":1.875,"method":"GET","path":"/","route":"api","identity":null,"status":200,
     "bytes_sent":123,"upstream":"127.0.0.1:9000","upstream_ms":0.912,"duration_ms":1.234,
     "tls":{"version":"1.3",...}}

Cheap on the hot path: the parts that belong to a connection (client, listener, the TLS
handshake's duration, and the whole `tls` object with its JA4 and client identity) are
serialized once, when the connection is made or its handshake completes; a request only
formats its own fields into one bytes object and queues it in a LineSink, written out at
BUFFER_SIZE, by the gateway's ticker (4 times a second) and at shutdown; a slow reader of a
FIFO or a full disk never blocks the gateway (see line_sink). With the log off, none of this runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Final

from outwork.config.load import GROUP_NAMES
from outwork.observe.line_sink import CLOSE_WAIT_SECONDS, LineSink
from outwork.proxy.exchange import route_label
from outwork.tls import events as ev
from outwork.tls.enums import CipherSuite

if TYPE_CHECKING:
    from outwork.proxy.exchange import Exchange

BUFFER_SIZE: Final = 64 * 1024  # queued lines written out at once past this size
MAX_ROUTE_NAMES: Final = 4096  # route names whose JSON is kept (routes come from the config)

_GROUP_NAMES: Final = {group: name for name, group in GROUP_NAMES.items()}
# A request path that can go into a JSON string as it is (the common case); anything else is
# escaped by json.dumps.
_PLAIN: Final = re.compile(rb"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_VERSIONS: Final = {0x0304: "1.3", 0x0303: "1.2"}
_METHODS: Final = {
    m: b'"' + m + b'"'
    for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE")
}


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


def _text(value: bytes) -> bytes:
    """A JSON string for bytes from the wire (a method or a path)."""
    if _PLAIN.fullmatch(value):
        return b'"' + value + b'"'
    return _json(value.decode("utf-8", "backslashreplace"))


def connection_part(
    client: str, listener: str, tls_ms: float | None = None, proto: str = "http/1.1"
) -> bytes:
    """`,"client":...,"listener":...,"proto":...,"tls_ms":...`: made when the connection is
    made, and again when its TLS handshake completes (`tls_ms`: from the connection accepted to
    the handshake complete; null on a plain listener; `proto`: "h2" when ALPN chose it)."""
    handshake = b"null" if tls_ms is None else b"%.3f" % tls_ms
    return b',"client":%s,"listener":%s,"proto":%s,"tls_ms":%s' % (
        _json(client),
        _json(listener),
        _json(proto),
        handshake,
    )


def tls_names(version: int, suite: object, group: object) -> tuple[str, str, str]:
    """Names for a handshake's version ("1.3"), cipher suite (IANA) and group (as in the
    config; "" for none, as with TLS 1.2 RSA key exchange)."""
    if isinstance(suite, CipherSuite):
        cipher = suite.name
    else:
        name = getattr(suite, "name", None)
        cipher = "TLS_" + name if name is not None else str(suite)
    named = _GROUP_NAMES.get(group) if group is not None else None  # type: ignore[call-overload]
    return _VERSIONS.get(version, hex(version)), cipher, named or ""


def tls_part(done: ev.HandshakeComplete) -> bytes:
    """The `tls` object: made once per connection, when its handshake completes."""
    version, cipher, group = tls_names(done.version, done.cipher_suite, done.group)
    identity = done.client_identity
    return _json(
        {
            "version": version,
            "cipher": cipher,
            "group": group or None,
            "ja4": done.ja4,
            "resumed": done.resumed,
            "alpn": done.alpn_protocol,
            "sni": done.server_name,
            "client_subject": identity.subject if identity else None,
            "client_sans": list(identity.sans) if identity else None,
            "client_fingerprint": identity.fingerprint_sha256 if identity else None,
        }
    )


class AccessLog:
    def __init__(self, target: str, lost: Counter[str]) -> None:
        """`lost` counts the lines a slow reader or a failed write loses (see line_sink)."""
        self._sink = LineSink(target, sys.stdout.buffer, lost, "access")
        # Request ids: unique per process start (random prefix) and per request (a counter).
        self._id_prefix = os.urandom(6).hex().encode() + b"-"
        self._count = 0
        self._second = -1
        self._second_text = b""
        self._routes: dict[str, bytes] = {}  # route name -> its JSON string, made once

    def log(self, ex: Exchange, connection: bytes, tls: bytes) -> None:
        now = time.time()
        done = time.monotonic()  # the exchange's timestamps are monotonic
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        # The id sent upstream as X-Request-Id when routing set one; else a local one.
        given = getattr(ex, "request_id", None)
        if given:
            request_id = _text(given if isinstance(given, bytes) else given.encode())
        else:
            self._count += 1
            request_id = b'"%s%x"' % (self._id_prefix, self._count)
        head = ex.head
        if head is not None:
            method = _METHODS.get(head.method) or _text(head.method)
            target = head.target
            q = target.find(b"?")  # the query string is not logged: it can carry secrets
            path = target if q < 0 else target[:q]
            path = b'"' + path + b'"' if _PLAIN.fullmatch(path) else _text(path)
        else:
            method = path = b"null"
        route = route_label(ex)
        route_json = self._routes.get(route)
        if route_json is None:
            route_json = _json(route)
            if len(self._routes) < MAX_ROUTE_NAMES:
                self._routes[route] = route_json
        identity = ex.identity  # set by an `authenticate` filter
        who = b"null" if identity is None else _json(f"{identity.kind}:{identity.subject}")
        started = ex.started
        upstream_at = ex.upstream_at
        upstream_ms = b"%.3f" % ((upstream_at - started) * 1000) if upstream_at else b"null"
        line = (
            b'{"time":"%s.%03dZ","request_id":%s%s,"method":%s,"path":%s,"route":%s,"identity":%s,'
            b'"status":%d,"bytes_sent":%d,"upstream":%s,"upstream_ms":%s,"duration_ms":%.3f,"tls":%s}\n'
            % (
                self._second_text,
                int((now - second) * 1000),
                request_id,
                connection,
                method,
                path,
                route_json,
                who,
                ex.status,
                ex.bytes_sent,
                ex.target,
                upstream_ms,
                max((done - started) * 1000, 0.0),
                tls,
            )
        )
        sink = self._sink
        sink.write(line)
        if sink.pending >= BUFFER_SIZE:
            sink.flush()

    def flush(self) -> int:
        """Write the lines queued; returns the bytes a slow reader left waiting."""
        return self._sink.flush()

    def close(self, wait: float = CLOSE_WAIT_SECONDS) -> None:
        self._sink.close(wait)
