"""The access log: one JSON object per answered request, one line each.

    {"time":"2026-11-29T07:30:00.123Z","request_id":"5f0c2a9e41d7-1a","client":"127.0.0.1:50522",
     "listener":"public","method":"GET","path":"/","status":200,"bytes_sent":123,
     "duration_ms":1.234,"upstream":"127.0.0.1:9000","tls":{"version":"1.3",...}}

Cheap on the hot path: the parts that belong to a connection (client, listener, and the whole
`tls` object with its JA4 and client identity) are serialized once, when the connection is
made or its handshake completes; a request only formats its own fields into one bytes object
and hands it to a buffered file, flushed by the gateway's ticker (4 times a second) and at
shutdown. With the log off, none of this runs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import IO, TYPE_CHECKING

from outwork.policy.load import GROUP_NAMES
from outwork.tls import events as ev
from outwork.tls.enums import CipherSuite

if TYPE_CHECKING:
    from outwork.proxy.exchange import Exchange

BUFFER_SIZE = 64 * 1024

_GROUP_NAMES = {group: name for name, group in GROUP_NAMES.items()}
# A request path that can go into a JSON string as it is (the common case); anything else is
# escaped by json.dumps.
_PLAIN = re.compile(rb"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_VERSIONS = {0x0304: "1.3", 0x0303: "1.2"}
_METHODS = {
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


def connection_part(client: str, listener: str) -> bytes:
    """`,"client":...,"listener":...`: made once per connection."""
    return b',"client":' + _json(client) + b',"listener":' + _json(listener)


def tls_part(done: ev.HandshakeComplete) -> bytes:
    """The `tls` object: made once per connection, when its handshake completes."""
    suite = done.cipher_suite
    cipher = suite.name if isinstance(suite, CipherSuite) else "TLS_" + suite.name
    identity = done.client_identity
    return _json(
        {
            "version": _VERSIONS.get(done.version, hex(done.version)),
            "cipher": cipher,
            "group": _GROUP_NAMES.get(done.group) if done.group is not None else None,
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
    def __init__(self, target: str) -> None:
        self._owned = target != "-"
        self._out: IO[bytes] = (
            open(target, "ab", buffering=BUFFER_SIZE) if self._owned else sys.stdout.buffer
        )
        # Request ids: unique per process start (random prefix) and per request (a counter).
        self._id_prefix = os.urandom(6).hex().encode() + b"-"
        self._count = 0
        self._second = -1
        self._second_text = b""

    def log(self, ex: Exchange, connection: bytes, tls: bytes) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        self._count += 1
        head = ex.head
        if head is not None:
            method = _METHODS.get(head.method) or _text(head.method)
            target = head.target
            q = target.find(b"?")  # the query string is not logged: it can carry secrets
            path = target if q < 0 else target[:q]
            path = b'"' + path + b'"' if _PLAIN.fullmatch(path) else _text(path)
        else:
            method = path = b"null"
        duration = (now - ex.started) * 1000 if ex.started else 0.0
        line = (
            b'{"time":"%s.%03dZ","request_id":"%s%x"%s,"method":%s,"path":%s,"status":%d,'
            b'"bytes_sent":%d,"duration_ms":%.3f,"upstream":%s,"tls":%s}\n'
            % (
                self._second_text,
                int((now - second) * 1000),
                self._id_prefix,
                self._count,
                connection,
                method,
                path,
                ex.status,
                ex.bytes_sent,
                duration if duration > 0.0 else 0.0,
                ex.target,
                tls,
            )
        )
        try:
            self._out.write(line)
        except (OSError, ValueError):
            pass  # a full disk must not fail the request; the line is lost

    def flush(self) -> None:
        try:
            self._out.flush()
        except (OSError, ValueError):
            pass  # a closed stdout or a full disk must not stop the gateway

    def close(self) -> None:
        self.flush()
        if self._owned:
            self._out.close()
