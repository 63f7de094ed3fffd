"""Write the seed inputs of fuzz/corpus/h2/ (`seed-*`): real client traffic made with h2, and
the attacks the guard stops. Run from the repository root:

    .venv/bin/python fuzz/make_h2_corpus.py
"""

from __future__ import annotations

from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from hpack import Encoder

OUT = Path(__file__).resolve().parent / "corpus" / "h2"
MODE_FRAMES = b"\x00"  # byte 0: preface included in the input, fed whole
MODE_AFTER_PREFACE_SPLIT = b"\x07"  # preface added by the harness, fed in 22-byte pieces


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def client_traffic() -> bytes:
    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    base = [(":scheme", "https"), (":authority", "localhost")]
    conn.send_headers(1, [(":method", "GET"), (":path", "/"), *base], end_stream=True)
    conn.send_headers(3, [(":method", "POST"), (":path", "/echo"), *base, ("cookie", "a=1")])
    conn.send_data(3, b"hello")
    conn.end_stream(3)
    conn.send_headers(5, [(":method", "GET"), (":path", "/x"), *base, ("cookie", "b=2")])
    conn.reset_stream(5)
    conn.ping(b"12345678")
    return conn.data_to_send()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    traffic = client_traffic()
    block = Encoder().encode(
        [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/")]
    )
    seeds = {
        "seed-client-traffic": MODE_FRAMES + traffic,
        "seed-client-traffic-split": MODE_AFTER_PREFACE_SPLIT + traffic[24:],
        "seed-continuation-flood": b"\x01"
        + frame(4, 0, 0, b"")
        + frame(1, 0, 1, block)
        + frame(9, 0, 1, b"\x40\x01a\x01b" * 20) * 40,
        "seed-rapid-reset": b"\x01"
        + frame(4, 0, 0, b"")
        + b"".join(
            frame(1, 4, 2 * i + 1, block) + frame(3, 0, 2 * i + 1, b"\x00\x00\x00\x08")
            for i in range(60)
        ),
        "seed-ping-flood": b"\x01" + frame(4, 0, 0, b"") + frame(6, 0, 0, b"8 bytes!") * 30,
        "seed-malformed-headers": b"\x01"
        + frame(4, 0, 0, b"")
        + frame(1, 5, 1, Encoder().encode([(":path", "/"), ("X-Up", "a\r\nb"), (":method", "G")])),
    }
    for name, data in seeds.items():
        (OUT / name).write_bytes(data)


if __name__ == "__main__":
    main()
