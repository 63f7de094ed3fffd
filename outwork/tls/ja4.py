"""JA4 fingerprint of a ClientHello (FoxIO's published JA4 algorithm, TCP only).

`t13d1516h2_8daaf6152771_e5627efa2ab1`: protocol, version, SNI, counts and ALPN; the hash of
the sorted cipher suites; the hash of the sorted extensions (less SNI and ALPN) with the
signature algorithms in their original order. GREASE values are ignored throughout.
"""

from __future__ import annotations

import hashlib

from outwork.tls.codec import Reader
from outwork.tls.enums import ExtensionType, is_grease
from outwork.tls.messages import ClientHello, pull_uint16_list

_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
_EMPTY_HASH = "000000000000"


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12] if text else _EMPTY_HASH


def _alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _alpn_code(extensions: dict[int, bytes]) -> str:
    body = extensions.get(ExtensionType.ALPN)
    if not body or len(body) < 4:
        return "00"
    first = body[3 : 3 + body[2]]  # list length (2), first name length (1), first name
    if not first:
        return "00"
    if _alnum(first[0]) and _alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    hexed = first.hex()
    return hexed[0] + hexed[-1]


def _uint16_list(body: bytes | None, width: int) -> tuple[int, ...]:
    """A list of uint16 with a `width`-byte length prefix; () when absent or malformed (the
    fingerprint describes what was sent, it does not judge it)."""
    if not body:
        return ()
    try:
        r = Reader(body)
        if width == 1:
            with r.block(1) as sub:
                return tuple(sub.uint16() for _ in range(sub.remaining() // 2))
        return pull_uint16_list(r, 0, 0xFFFE)
    except Exception:  # noqa: BLE001 - a malformed list fingerprints as empty
        return ()


def ja4(hello: ClientHello) -> str:
    extensions = dict(hello.extensions)
    versions = [
        v
        for v in _uint16_list(extensions.get(ExtensionType.SUPPORTED_VERSIONS), 1)
        if not is_grease(v)
    ]
    version = _VERSIONS.get(max(versions) if versions else hello.legacy_version, "00")
    sni = "d" if ExtensionType.SERVER_NAME in extensions else "i"
    ciphers = sorted(c for c in hello.cipher_suites if not is_grease(c))
    ext_types = [t for t, _ in hello.extensions if not is_grease(t)]
    head = f"t{version}{sni}{min(len(ciphers), 99):02d}{min(len(ext_types), 99):02d}"
    head += _alpn_code(extensions)
    cipher_hash = _hash12(",".join(f"{c:04x}" for c in ciphers))
    sorted_ext = sorted(
        t for t in ext_types if t not in (ExtensionType.SERVER_NAME, ExtensionType.ALPN)
    )
    ext_text = ",".join(f"{t:04x}" for t in sorted_ext)
    sig_algs = [
        s
        for s in _uint16_list(extensions.get(ExtensionType.SIGNATURE_ALGORITHMS), 2)
        if not is_grease(s)
    ]
    if sig_algs:
        ext_text += "_" + ",".join(f"{s:04x}" for s in sig_algs)
    return f"{head}_{cipher_hash}_{_hash12(ext_text) if sorted_ext or sig_algs else _EMPTY_HASH}"
