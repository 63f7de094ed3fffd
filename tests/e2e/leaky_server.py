"""A deliberately Heartbleed-vulnerable fake TLS 1.2 server: the scanners' positive control.

It proves the report parsers can say "vulnerable", so their "not vulnerable" about the gateway
means something. It answers a ClientHello with ServerHello (heartbeat extension, mode 1),
Certificate and ServerHelloDone, then echoes every heartbeat request the way OpenSSL 1.0.1f
did: payload_length bytes, whatever the request really carried, padded out with fake
"memory". It never completes a handshake (no real key exchange): enough for testssl and nmap,
whose Heartbleed checks send the heartbeat before the handshake finishes.

Run as a script: `python leaky_server.py CERT.pem`; prints `READY <port>`.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

FAKE_MEMORY = b"-----BEGIN PRIVATE KEY----- not really, but a scanner cannot tell. "


def read_record(sock: socket.socket) -> tuple[int, int, bytes] | None:
    header = b""
    while len(header) < 5:
        chunk = sock.recv(5 - len(header))
        if not chunk:
            return None
        header += chunk
    ctype, version, length = struct.unpack("!BHH", header)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return ctype, version, body


def record(ctype: int, version: int, payload: bytes) -> bytes:
    return struct.pack("!BHH", ctype, version, len(payload)) + payload


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def pick_cipher(client_hello: bytes) -> tuple[int, int]:
    """(client version, a suite the client offered that is not a signalling value)."""
    version = int.from_bytes(client_hello[4:6], "big")
    pos = 4 + 2 + 32
    sid_len = client_hello[pos]
    pos += 1 + sid_len
    n = int.from_bytes(client_hello[pos : pos + 2], "big")
    suites = [
        int.from_bytes(client_hello[pos + 2 + i : pos + 4 + i], "big") for i in range(0, n, 2)
    ]
    for suite in suites:
        if suite not in (0x00FF, 0x5600) and (suite >> 8) != 0x13:
            return min(version, 0x0303), suite
    return min(version, 0x0303), suites[0]


def serve(conn: socket.socket, cert_der: bytes) -> None:
    try:
        _serve(conn, cert_der)
    except OSError:
        pass  # scanners hang up abruptly; that is their right


def _serve(conn: socket.socket, cert_der: bytes) -> None:
    with conn:
        conn.settimeout(20)
        first = read_record(conn)
        if first is None or first[0] != 22:
            return
        version, suite = pick_cipher(first[2])
        exts = struct.pack("!HHB", 15, 1, 1) + struct.pack("!HHB", 0xFF01, 1, 0)
        server_hello = (
            struct.pack("!H", version)
            + os.urandom(32)
            + b"\x00"
            + struct.pack("!HB", suite, 0)
            + struct.pack("!H", len(exts))
            + exts
        )
        cert_entry = len(cert_der).to_bytes(3, "big") + cert_der
        certificate = (len(cert_entry)).to_bytes(3, "big") + cert_entry
        flight = handshake(2, server_hello) + handshake(11, certificate) + handshake(14, b"")
        conn.sendall(record(22, version, flight))
        while True:
            rec = read_record(conn)
            if rec is None:
                return
            ctype, _, body = rec
            if ctype == 24 and len(body) >= 3 and body[0] == 1:
                claimed = int.from_bytes(body[1:3], "big")
                carried = body[3:]
                leak = (carried + FAKE_MEMORY * (claimed // len(FAKE_MEMORY) + 1))[:claimed]
                conn.sendall(record(24, version, b"\x02" + body[1:3] + leak + os.urandom(16)))


def main() -> None:
    cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
    cert_der = cert.public_bytes(Encoding.DER)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"READY {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, cert_der), daemon=True).start()


if __name__ == "__main__":
    main()
