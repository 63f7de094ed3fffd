"""JA4 fingerprint of a ClientHello (FoxIO's published JA4 algorithm, TCP only).

`t13d1516h2_8daaf6152771_e5627efa2ab1`: protocol, version, SNI, counts and ALPN; the hash of
the sorted cipher suites; the hash of the sorted extensions (less SNI and ALPN) with the
signature algorithms in their original order. GREASE values are ignored throughout.
"""

from __future__ import annotations

import functools
import hashlib

from outwork.tls.codec import Reader
from outwork.tls.enums import ExtensionType
from outwork.tls.messages import ClientHello

_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
_EMPTY_HASH = "000000000000"


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12] if text else _EMPTY_HASH


def _alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _alpn_code(body: bytes | None) -> str:
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
        return Reader(body).uint16_tuple(width)
    except Exception:  # noqa: BLE001 - a malformed list fingerprints as empty
        return ()


def _not_grease(values: tuple[int, ...]) -> tuple[int, ...]:
    # is_grease inlined: this runs on every value of every ClientHello.
    return tuple(v for v in values if (v & 0x0F0F) != 0x0A0A or (v >> 8) != (v & 0xFF))


def ja4(hello: ClientHello) -> str:
    extensions = dict(hello.extensions)
    versions = _not_grease(_uint16_list(extensions.get(ExtensionType.SUPPORTED_VERSIONS), 1))
    # The fingerprint of what is left once GREASE is dropped and the extensions sorted:
    # clients of one kind then send the same values (Chrome picks its GREASE values at
    # random and shuffles its extensions), so most handshakes find their JA4 in the cache.
    return _ja4(
        max(versions) if versions else hello.legacy_version,
        tuple(sorted(_not_grease(hello.cipher_suites))),
        tuple(sorted(_not_grease(tuple(extensions)))),
        extensions.get(ExtensionType.ALPN),
        _not_grease(_uint16_list(extensions.get(ExtensionType.SIGNATURE_ALGORITHMS), 2)),
    )


@functools.lru_cache(maxsize=1024)
def _ja4(
    version_number: int,
    ciphers: tuple[int, ...],
    ext_types: tuple[int, ...],
    alpn: bytes | None,
    sig_algs: tuple[int, ...],
) -> str:
    version = _VERSIONS.get(version_number, "00")
    sni = "d" if ExtensionType.SERVER_NAME in ext_types else "i"
    head = f"t{version}{sni}{min(len(ciphers), 99):02d}{min(len(ext_types), 99):02d}"
    head += _alpn_code(alpn)
    cipher_hash = _hash12(",".join(f"{c:04x}" for c in ciphers))
    sorted_ext = [t for t in ext_types if t not in (ExtensionType.SERVER_NAME, ExtensionType.ALPN)]
    ext_text = ",".join(f"{t:04x}" for t in sorted_ext)
    if sig_algs:
        ext_text += "_" + ",".join(f"{s:04x}" for s in sig_algs)
    return f"{head}_{cipher_hash}_{_hash12(ext_text) if sorted_ext or sig_algs else _EMPTY_HASH}"
