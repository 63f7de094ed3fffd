"""The few DER encodings a CSR needs (X.690), for keys that sign elsewhere (an HSM):
cryptography builds a CSR only with a private key object it holds, so the request is put
together here and the token signs it. Definite lengths, minimal encodings, nothing else."""

from __future__ import annotations


def length(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative length")
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(body) > 126:
        raise ValueError("length too large for DER")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))  # DER: SET OF elements in order of encoding


def integer(n: int) -> bytes:
    """Two's complement, minimal (a leading 0 byte only to keep a positive number positive)."""
    size = (n + (n < 0)).bit_length() // 8 + 1
    return tlv(0x02, n.to_bytes(size, "big", signed=True))


def null() -> bytes:
    return b"\x05\x00"


def octet_string(data: bytes) -> bytes:
    return tlv(0x04, data)


def bit_string(data: bytes) -> bytes:
    return tlv(0x03, b"\x00" + data)  # whole bytes: no unused bits


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39) or min(arcs) < 0:
        raise ValueError(f"invalid object identifier {dotted!r}")
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def context(number: int, content: bytes) -> bytes:
    """[number] IMPLICIT, constructed (what CertificationRequestInfo's attributes use)."""
    if not 0 <= number <= 30:
        raise ValueError("context tag number out of range")
    return tlv(0xA0 | number, content)
