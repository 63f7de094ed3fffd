"""Headless Chromium against the engine: a page loads over TLS 1.3 with the post-quantum
hybrid group, and a second connection resumes with the ticket."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from outwork.tls import events as ev
from outwork.tls.config import ServerConfig
from outwork.tls.enums import NamedGroup, ProtocolVersion
from tests.conftest import require_tool
from tests.tls.engine_peers import EngineServer
from tests.tls.pki import Leaf

PAGE = b"<html><body><h1 id=greeting>hello from outwork</h1></body></html>"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    return require_tool("chromium")


def test_chromium_loads_a_page_with_x25519mlkem768(leaves: dict[str, Leaf], tmp_path: Path) -> None:
    leaf = leaves["ecdsa-p256"]
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % len(PAGE) + PAGE
    )
    server = EngineServer(
        ServerConfig(certificates=(leaf.certified(),), alpn_protocols=("http/1.1",)), reply=reply
    )
    spki = leaf.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    try:
        result = subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--ignore-certificate-errors-spki-list={pin}",
                "--dump-dom",
                f"https://localhost:{server.port}/",
            ],
            capture_output=True,
            timeout=90,
        )
    finally:
        server.close()
    assert b"hello from outwork" in result.stdout, result.stderr.decode()[-2000:]
    done = [e for e in server.events if isinstance(e, ev.HandshakeComplete)]
    assert done, server.events
    first = done[0]
    assert first.version == ProtocolVersion.TLS13
    assert first.group == NamedGroup.X25519MLKEM768
    assert first.alpn_protocol == "http/1.1"
    assert first.ja4 is not None and first.ja4.startswith("t13d")
    assert not any(isinstance(e, ev.ConnectionFailed) for e in server.events)
