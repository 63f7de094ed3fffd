"""JA4 against a published fingerprint (a Chrome 143 ClientHello, raw lists in original order)."""

from __future__ import annotations

import time

from outwork.tls.codec import Writer
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.ja4 import ja4
from outwork.tls.messages import ClientHello, push_uint16_list
from tests.tls.inmemory import pump
from tests.tls.pki import CertAuthority, Leaf

CHROME_CIPHERS = "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"
CHROME_EXTENSIONS = (
    "002d,0033,0010,fe0d,0017,44cd,0000,000b,000a,002b,ff01,0023,0012,0005,000d,001b"
)
CHROME_SIGALGS = "0403,0804,0401,0503,0805,0501,0806,0601"


def hello(ciphers: str, extensions: str, sigalgs: str, alpn: bytes = b"h2") -> ClientHello:
    bodies: dict[int, bytes] = {
        0x0010: (len(alpn) + 1).to_bytes(2, "big") + bytes((len(alpn),)) + alpn,
        0x002B: b"\x04\x0a\x0a\x03\x04",  # GREASE, then TLS 1.3
    }
    w = Writer()
    push_uint16_list(w, tuple(int(s, 16) for s in sigalgs.split(",")) if sigalgs else ())
    bodies[0x000D] = w.getvalue()
    exts = tuple((int(e, 16), bodies.get(int(e, 16), b"")) for e in extensions.split(","))
    return ClientHello(
        0x0303,
        bytes(32),
        b"",
        (0x0A0A,) + tuple(int(c, 16) for c in ciphers.split(",")),
        b"\x00",
        ((0x1A1A, b""),) + exts,
    )


def test_published_chrome_fingerprint() -> None:
    assert ja4(hello(CHROME_CIPHERS, CHROME_EXTENSIONS, CHROME_SIGALGS)) == (
        "t13d1516h2_8daaf6152771_d8a2da3f94cd"
    )


def test_no_sni_no_alpn_and_non_alphanumeric_alpn() -> None:
    extensions = CHROME_EXTENSIONS.replace("0000,", "").replace("0010,", "")
    fingerprint = ja4(hello(CHROME_CIPHERS, extensions, CHROME_SIGALGS))
    assert fingerprint.startswith("t13i151400_8daaf6152771_")
    weird = ja4(hello(CHROME_CIPHERS, CHROME_EXTENSIONS, CHROME_SIGALGS, alpn=b"\xab\x01"))
    assert weird.startswith("t13d1516a1_")


def test_server_reports_ja4_of_the_client_hello(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client = ClientConnection(
        ClientConfig(trust_roots=(ca.cert,), alpn_protocols=("http/1.1",)), server_name="localhost"
    )
    server = ServerConnection(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    now = time.time()
    client.start_handshake(now)
    server.receive_data(client.data_to_send(), now)  # the ClientHello: parsed, fingerprinted
    assert server.client_hello is not None
    fingerprint = ja4(server.client_hello)
    pump(server, client, now=now)
    assert server.negotiated is not None
    assert server.negotiated.ja4 == server.ja4 == fingerprint
    # Handshake-only state is released once established; the fingerprint stays.
    assert server.client_hello is None
    assert server.ja4 is not None and server.ja4.startswith(
        "t13d09"
    )  # 3 TLS 1.3 + 6 TLS 1.2 suites
