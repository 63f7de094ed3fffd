"""Regenerate the hand-made seed files in `fuzz/corpus/` (files named `seed-*`).

    .venv/bin/python fuzz/make_seed_corpus.py

Seeds: ClientHellos from the engine's own client (groups, ALPN, SNI, heartbeat varied),
ClientHellos captured from `openssl s_client`, `curl` and `gnutls-cli` (whichever are
installed) by a socket server that records the first bytes, truncated and oversized variants,
and for the record target, real records of each kind and mode (see fuzz_records.py).
Files that atheris added (named by their SHA-1) are left alone.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

from engine_fixtures import (
    client_config,
    engine_client_hello,
    established_pair,
    first_hello_for_retry,
    resumption_hello,
    second_hello_for_retry,
    server_config,
)

from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import (
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    ProtocolVersion,
)
from outwork.tls.messages import handshake_message, pull_client_hello
from outwork.tls.records import frame_plaintext

CORPUS = Path(__file__).parent / "corpus"
CLIENT_TIMEOUT = 5


def hello_body(records: bytes) -> bytes:
    """The ClientHello body inside captured handshake records (possibly several); raises
    ValueError until all of it has arrived."""
    payload = bytearray()
    pos = 0
    while pos + 5 <= len(records) and records[pos] == ContentType.HANDSHAKE:
        length = int.from_bytes(records[pos + 3 : pos + 5], "big")
        payload += records[pos + 5 : pos + 5 + length]
        pos += 5 + length
    if len(payload) < 4 or payload[0] != HandshakeType.CLIENT_HELLO:
        raise ValueError("no ClientHello in the captured bytes")
    length = int.from_bytes(payload[1:4], "big")
    if len(payload) < 4 + length:
        raise ValueError("ClientHello incomplete")
    return bytes(payload[4 : 4 + length])


def _complete(data: bytes) -> bool:
    try:
        hello_body(data)
    except ValueError:
        return False
    return True


def capture_first_bytes(command: list[str]) -> bytes | None:
    """Run a TLS client against a socket that records its ClientHello, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    captured = bytearray()

    def accept() -> None:
        listener.settimeout(CLIENT_TIMEOUT)
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            while not _complete(bytes(captured)):
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                captured.extend(chunk)

    thread = threading.Thread(target=accept)
    thread.start()
    argv = [part.replace("PORT", str(port)) for part in command]
    try:
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        pass
    thread.join()
    listener.close()
    return bytes(captured) if _complete(bytes(captured)) else None


REAL_CLIENTS: dict[str, list[str]] = {
    "openssl-tls13": [
        "openssl",
        "s_client",
        "-connect",
        "127.0.0.1:PORT",
        "-tls1_3",
        "-servername",
        "fuzz.outwork.test",
    ],
    "openssl-tls13-p256": [
        "openssl",
        "s_client",
        "-connect",
        "127.0.0.1:PORT",
        "-tls1_3",
        "-groups",
        "P-256",
        "-servername",
        "a.example",
    ],
    "openssl-tls13-p384-chacha": [
        "openssl",
        "s_client",
        "-connect",
        "127.0.0.1:PORT",
        "-tls1_3",
        "-groups",
        "P-384:X25519",
        "-ciphersuites",
        "TLS_CHACHA20_POLY1305_SHA256",
        "-alpn",
        "h2,http/1.1",
    ],
    "openssl-any-version": ["openssl", "s_client", "-connect", "127.0.0.1:PORT"],
    "curl-tls13": ["curl", "-sk", "--tlsv1.3", "https://localhost:PORT/"],
    "curl-tls13-http11": ["curl", "-sk", "--tlsv1.3", "--http1.1", "https://127.0.0.1:PORT/"],
    "gnutls-cli": ["gnutls-cli", "--insecure", "-p", "PORT", "localhost"],
    "openssl-tls12": ["openssl", "s_client", "-connect", "127.0.0.1:PORT", "-tls1_2"],
    "curl-tls12": ["curl", "-sk", "--tlsv1.2", "--tls-max", "1.2", "https://localhost:PORT/"],
}


def engine_hellos() -> dict[str, bytes]:
    """Records of ClientHellos from the engine's own client, one per configuration."""
    g = NamedGroup
    configs = {
        "engine-x25519": (client_config(), "fuzz.outwork.test"),
        "engine-no-sni": (client_config(), None),
        "engine-ip-sni": (client_config(), "127.0.0.1"),
        "engine-p256": (client_config(key_share_groups=(g.SECP256R1,)), "a.example"),
        "engine-p384-h2": (
            client_config(key_share_groups=(g.SECP384R1,), alpn=("h2", "http/1.1")),
            "b.example",
        ),
        "engine-mlkem": (client_config(key_share_groups=(g.X25519MLKEM768,)), "c.example"),
        "engine-x448-only": (
            client_config(groups=(g.X448,), key_share_groups=(g.X448,), alpn=()),
            "d.example",
        ),
        "engine-two-shares": (
            client_config(key_share_groups=(g.X25519, g.SECP256R1)),
            "e.example",
        ),
        "engine-p521-share": (
            client_config(groups=(g.SECP521R1, g.SECP256R1), key_share_groups=(g.SECP521R1,)),
            "f.example",
        ),
        "engine-heartbeat": (client_config(heartbeat=True), "g.example"),
        "engine-long-alpn": (client_config(alpn=("x" * 255, "http/1.1")), "h.example"),
    }
    hellos = {name: engine_client_hello(sni, config) for name, (config, sni) in configs.items()}
    hellos["engine-tls12-only"] = engine_client_hello(
        "tls12.example", client_config(max_version=ProtocolVersion.TLS12)
    )
    # Resumption (a PSK and its binder; a TLS 1.2 session ticket): engine_fixtures fixes the
    # server's ticket keys, so these still resume when the corpus is replayed.
    hellos["engine-resume-tls13"] = resumption_hello()
    hellos["engine-resume-tls12"] = resumption_hello(tls12=True)
    return hellos


def variants(name: str, body: bytes) -> dict[str, bytes]:
    """Truncations and an oversized tail of one ClientHello body."""
    return {
        f"{name}-truncated-half": body[: len(body) // 2],
        f"{name}-truncated-last-byte": body[:-1],
        f"{name}-trailing-byte": body + b"\x00",
        f"{name}-oversized-extensions-length": body[:-2] + b"\xff\xff",
    }


def protected_records() -> dict[str, bytes]:
    """Real records captured around a completed handshake (they will not decrypt for a
    different pair: that exercises the framing and length checks of mode 1)."""
    client, server = established_pair()
    out = {}
    client.send_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out["client-app-data"] = client.data_to_send()
    client.update_write_key(request_peer_update=True)
    out["client-key-update"] = client.data_to_send()
    client.close()
    out["client-close-notify"] = client.data_to_send()
    del server
    return out


def tls12_app_data() -> bytes:
    client, _ = established_pair(tls12=True)
    client.send_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return client.data_to_send()


def server_flights() -> dict[str, bytes]:
    """A real server's first flight and a HelloRetryRequest, for a waiting client (mode 2)."""
    client = ClientConnection(client_config(), server_name="fuzz.outwork.test")
    server = ServerConnection(server_config())
    client.start_handshake()
    server.receive_data(client.data_to_send())
    out = {"server-flight": server.data_to_send()}
    # A server that only takes x25519, a client with only a P-256 share: HelloRetryRequest.
    g = NamedGroup
    client = ClientConnection(
        client_config(groups=(g.SECP256R1, g.X25519), key_share_groups=(g.SECP256R1,)),
        server_name="fuzz.outwork.test",
    )
    server = ServerConnection(replace(server_config(), groups=(g.X25519,)))
    client.start_handshake()
    server.receive_data(client.data_to_send())
    out["hello-retry-request"] = server.data_to_send()
    return out


def tls12_flows() -> dict[str, bytes]:
    """A TLS 1.2 full handshake's flights: the client's first and second, the server's."""
    client = ClientConnection(
        client_config(max_version=ProtocolVersion.TLS12), server_name="fuzz.outwork.test"
    )
    server = ServerConnection(server_config())
    client.start_handshake()
    hello = client.data_to_send()
    server.receive_data(hello)
    server_flight = server.data_to_send()
    client.receive_data(server_flight)
    client_flight = client.data_to_send()
    return {
        "mode0-tls12-hello-then-client-flight": b"\x00" + hello + client_flight,
        "mode0-tls12-hello-then-ccs-first": b"\x00"
        + hello
        + frame_plaintext(ContentType.CHANGE_CIPHER_SPEC, b"\x01")
        + client_flight,
        "mode2-tls12-server-flight": b"\x42" + server_flight,
    }


def sealed(content_type: int, content: bytes) -> bytes:
    return bytes((content_type,)) + len(content).to_bytes(2, "big") + content


def write(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"seed-{name}").write_bytes(data)


def wire_hardening_seeds(first: bytes) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """ClientHello bodies just over each count cap and breaking each receive-side MUST, and
    records for the record-layer rules (modes of fuzz_records.py): (hello bodies, records)."""
    from outwork.tls.codec import Reader, Writer
    from outwork.tls.extensions import push_key_share_client, push_pre_shared_key_client
    from outwork.tls.groups import KeyShare
    from outwork.tls.messages import push_client_hello, push_uint16_list

    body = hello_body(first)
    hello = pull_client_hello(Reader(body))
    x25519 = (int(NamedGroup.X25519), KeyShare(NamedGroup.X25519).share)

    def encoded(**changes: object) -> bytes:
        w = Writer()
        push_client_hello(w, replace(hello, **changes))  # type: ignore[arg-type]
        return w.getvalue()

    def with_extension(ext_type: int, ext_body: bytes | None) -> tuple[tuple[int, bytes], ...]:
        kept = tuple((t, b) for t, b in hello.extensions if t != ext_type)
        return kept if ext_body is None else ((ext_type, ext_body),) + kept

    def uint16s(values: tuple[int, ...]) -> bytes:
        w = Writer()
        push_uint16_list(w, values)
        return w.getvalue()

    groups = ExtensionType.SUPPORTED_GROUPS
    bodies = {
        "caps-65-extensions": encoded(
            extensions=tuple((0x7000 + i, b"") for i in range(65 - len(hello.extensions)))
            + hello.extensions
        ),
        "caps-257-suites": encoded(cipher_suites=tuple(range(0x2000, 0x2101))),
        "caps-129-groups": encoded(
            extensions=with_extension(groups, uint16s(tuple(range(0x3000, 0x3080)) + (0x1D,)))
        ),
        "caps-17-key-shares": encoded(
            extensions=with_extension(
                ExtensionType.KEY_SHARE,
                push_key_share_client(tuple((0x3000 + i, b"k") for i in range(16)) + (x25519,)),
            )
        ),
        "legacy-version-0301": encoded(legacy_version=0x0301),
        "empty-key-share": encoded(extensions=with_extension(ExtensionType.KEY_SHARE, b"\x00\x00")),
        "zero-p256-share-beside-x25519": encoded(
            extensions=with_extension(
                ExtensionType.KEY_SHARE,
                push_key_share_client(((int(NamedGroup.SECP256R1), b"\x04" + bytes(64)), x25519)),
            )
        ),
        "psk-without-modes": encoded(
            extensions=with_extension(ExtensionType.PSK_KEY_EXCHANGE_MODES, None)
            + (
                (
                    int(ExtensionType.PRE_SHARED_KEY),
                    push_pre_shared_key_client(((b"ticket", 0),), (bytes(32),)),
                ),
            )
        ),
    }
    hs, alert = ContentType.HANDSHAKE, ContentType.ALERT
    message = first[5:]
    key_update = handshake_message(HandshakeType.KEY_UPDATE, b"\x01")
    records = {
        "mode0-empty-alert": b"\x00" + frame_plaintext(alert, b""),
        "mode0-alert-between-hello-fragments": b"\x00"
        + frame_plaintext(hs, message[:40])
        + frame_plaintext(alert, b"\x01\x5a")
        + frame_plaintext(hs, message[40:]),
        "mode0-hello-in-one-byte-records": b"\x00"
        + b"".join(frame_plaintext(hs, message[i : i + 1]) for i in range(len(message))),
        "mode1-plaintext-close-notify-after-handshake": b"\x01"
        + frame_plaintext(alert, b"\x01\x00"),
        "mode3-app-data-between-key-update-fragments": b"\x03"
        + sealed(hs, key_update[:2])
        + sealed(ContentType.APPLICATION_DATA, b"x")
        + sealed(hs, key_update[2:]),
        "mode3-key-update-requests": b"\x03" + sealed(hs, key_update) * 20,
    }
    return bodies, records


def main() -> None:
    hello_dir = CORPUS / "client_hello"
    records_dir = CORPUS / "records"
    hellos = engine_hellos()
    for name, command in REAL_CLIENTS.items():
        captured = capture_first_bytes(command)
        if captured is None:
            print(f"skipped {name}: no ClientHello captured")
            continue
        hellos[name] = captured
    for name, records in hellos.items():
        body = hello_body(records)
        write(hello_dir, name, body)
        write(records_dir, f"mode0-{name}", b"\x00" + records)
    for name, body in variants("engine-x25519", hello_body(hellos["engine-x25519"])).items():
        write(hello_dir, name, body)
    write(hello_dir, "empty", b"")
    # The second ClientHello after a HelloRetryRequest (see engine_fixtures.retry_server).
    second = second_hello_for_retry()
    write(hello_dir, "second-hello-after-retry", second)
    write(hello_dir, "second-hello-after-retry-cookie-cut", second[:-8])
    write(records_dir, "mode0-first-hello-for-retry", b"\x00" + first_hello_for_retry())

    first = hellos["engine-x25519"]
    hs, ccs, alert = ContentType.HANDSHAKE, ContentType.CHANGE_CIPHER_SPEC, ContentType.ALERT
    app, hb = ContentType.APPLICATION_DATA, ContentType.HEARTBEAT
    mode0 = {
        "hello-split-in-two-records": frame_plaintext(hs, first[5:40])
        + frame_plaintext(hs, first[40:]),
        "hello-truncated": first[: len(first) // 2],
        "hello-then-ccs": first + frame_plaintext(ccs, b"\x01"),
        "record-overflow": bytes((hs, 3, 3, 0x41, 0x01)) + bytes(64),
        "zero-length-handshake": bytes((hs, 3, 3, 0, 0)),
        "unknown-content-type": bytes((99, 3, 3, 0, 1, 0)),
        "version-2": bytes((hs, 2, 0, 0, 1, 1)),
        "alert-fatal": frame_plaintext(alert, b"\x02\x28"),
        "alert-close-notify": frame_plaintext(alert, b"\x01\x00"),
        "app-data-before-handshake": frame_plaintext(app, b"hello"),
        "heartbleed-probe": frame_plaintext(hb, b"\x01\x40\x00" + b"A" * 3),
        "heartbeat-well-formed": frame_plaintext(hb, b"\x01\x00\x03abc" + bytes(16)),
        "huge-handshake-length": frame_plaintext(hs, b"\x01\xff\xff\xff"),
        "server-hello-to-server": frame_plaintext(
            hs, handshake_message(HandshakeType.SERVER_HELLO, bytes(40))
        ),
    }
    for name, data in mode0.items():
        write(records_dir, f"mode0-{name}", b"\x00" + data)
    write(records_dir, "mode0-heartbleed-probe-heartbeat-on", b"\x80" + mode0["heartbleed-probe"])

    for name, data in protected_records().items():
        write(records_dir, f"mode1-{name}", b"\x01" + data)
    write(records_dir, "mode1-short-protected", b"\x01" + bytes((app, 3, 3, 0, 5)) + bytes(5))
    write(records_dir, "mode1-ciphertext-overflow", b"\x01" + bytes((app, 3, 3, 0x41, 0x01)))
    write(
        records_dir, "mode1-plaintext-handshake-after-keys", b"\x01" + frame_plaintext(hs, b"\x14")
    )

    for name, data in server_flights().items():
        write(records_dir, f"mode2-{name}", b"\x02" + data)
    for name, data in tls12_flows().items():
        write(records_dir, name, data)

    key_update = handshake_message(HandshakeType.KEY_UPDATE, b"\x01")
    ticket = handshake_message(
        HandshakeType.NEW_SESSION_TICKET,
        b"\x00\x00\x1c\x20" + b"\x01\x02\x03\x04" + b"\x01\x00" + b"\x00\x04tick" + b"\x00\x00",
    )
    mode34 = {
        "app-data": sealed(app, b"GET / HTTP/1.1\r\n\r\n"),
        "empty-app-data": sealed(app, b""),
        "close-notify": sealed(alert, b"\x01\x00"),
        "key-update-requested": sealed(hs, key_update),
        "key-update-then-data": sealed(hs, key_update) + sealed(app, b"after"),
        "key-update-and-partial-message": sealed(hs, key_update + b"\x18\x00"),
        "new-session-ticket": sealed(hs, ticket),
        "ccs-inside-protection": sealed(ccs, b"\x01"),
        "heartbeat-request": sealed(hb, b"\x01\x00\x03abc" + bytes(16)),
        "heartbleed-probe": sealed(hb, b"\x01\xff\xff" + b"A" * 20),
        "unknown-inner-type": sealed(0x42, b"x"),
    }
    for name, data in mode34.items():
        write(records_dir, f"mode3-{name}", b"\x03" + data)
        write(records_dir, f"mode4-{name}", b"\x04" + data)
    for name in ("app-data", "close-notify", "key-update-requested", "new-session-ticket"):
        write(records_dir, f"mode3-tls12-{name}", b"\x43" + mode34[name])
        write(records_dir, f"mode4-tls12-{name}", b"\x44" + mode34[name])
    write(records_dir, "mode1-tls12-client-app-data", b"\x41" + tls12_app_data())
    write(
        records_dir, "mode3-heartbeat-request-heartbeat-on", b"\x83" + mode34["heartbeat-request"]
    )
    write(records_dir, "mode3-heartbleed-probe-heartbeat-on", b"\x83" + mode34["heartbleed-probe"])
    hardening_bodies, hardening_records = wire_hardening_seeds(first)
    for name, data in hardening_bodies.items():
        write(hello_dir, name, data)
    for name, data in hardening_records.items():
        write(records_dir, name, data)
    print(f"wrote seeds to {CORPUS}")


if __name__ == "__main__":
    main()
