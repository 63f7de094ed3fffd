"""Writes the seed inputs of fuzz/corpus/scan_wire/ (what real servers answer the scanner).

.venv/bin/python fuzz/make_scan_corpus.py
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "scan_wire"


def record(content_type: int, payload: bytes) -> bytes:
    return struct.pack("!BHH", content_type, 0x0303, len(payload)) + payload


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def server_hello(version: int, extensions: bytes, compression: int = 0) -> bytes:
    body = struct.pack("!H", version) + bytes(range(32)) + b"\x00" + b"\xc0\x2b"
    body += bytes([compression])
    return body + struct.pack("!H", len(extensions)) + extensions


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    heartbeat_reneg = b"\x00\x0f\x00\x01\x01\xff\x01\x00\x01\x00"
    sh12 = server_hello(0x0303, heartbeat_reneg)
    sh13 = server_hello(
        0x0303, b"\x00\x2b\x00\x02\x03\x04\x00\x33\x00\x24\x00\x1d\x00\x20" + bytes(32)
    )
    fake_cert = b"\x30\x82\x01\x00" + bytes(256)
    cert = (len(fake_cert) + 3).to_bytes(3, "big") + len(fake_cert).to_bytes(3, "big") + fake_cert
    ske = b"\x03\x00\x17\x41\x04" + bytes(64) + b"\x04\x03\x00\x04abcd"
    flight = handshake(2, sh12) + handshake(11, cert) + handshake(12, ske) + handshake(14, b"")
    heartbeat = b"\x02\x10\x00" + bytes(100)
    seeds = {
        "flight12": b"\x00\x20" + record(22, flight),
        "flight12-split-heartbeat": b"\x00\x03" + record(22, flight) + record(24, heartbeat),
        "alert": b"\x00\x00" + record(21, b"\x02\x28"),
        "hello13": b"\x00\x00" + record(22, handshake(2, sh13)) + record(20, b"\x01"),
        "server-hello12": b"\x01\x00" + sh12,
        "server-hello10-bare": b"\x01\x00" + sh12[:38] + b"\x00\x2f\x01",
        "certificate": b"\x02\x00" + cert,
        "heartbeat-response": b"\x03\x10" + heartbeat,
    }
    for name, data in seeds.items():
        (CORPUS / f"seed-{name}").write_bytes(data)
    print(f"{len(seeds)} seeds in {CORPUS}", hashlib.sha1(b"".join(seeds.values())).hexdigest())


if __name__ == "__main__":
    main()
