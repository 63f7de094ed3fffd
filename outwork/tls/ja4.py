"""JA4 fingerprint of a ClientHello (FoxIO's published JA4 algorithm, TCP only).

`t13d1516h2_8daaf6152771_e5627efa2ab1`: protocol, version, SNI, counts and ALPN; the hash of
the sorted cipher suites; the hash of the sorted extensions (less SNI and ALPN) with the
signature algorithms in their original order. GREASE values are ignored throughout.
"""

from __future__ import annotations

import functools
import hashlib
from itertools import filterfalse
from typing import Final

from outwork.tls.codec import Reader
from outwork.tls.enums import ExtensionType
from outwork.tls.messages import ClientHello

_VERSIONS: Final = {
    0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"
}  # fmt: skip
_EMPTY_HASH: Final = "000000000000"


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


# The 16 GREASE values (RFC 8701): 0x0A0A, 0x1A1A, ..., 0xFAFA.
_GREASE: Final = frozenset(0x0A0A + 0x1010 * i for i in range(16))
_is_grease = _GREASE.__contains__


def _not_grease(values: tuple[int, ...]) -> tuple[int, ...]:
    # Filtered in C (filterfalse with a set's membership test): this runs on every value of
    # every ClientHello, some 60 of them.
    return tuple(filterfalse(_is_grease, values))


# JA4 by what it is computed from, as sent (GREASE and extension order included): a client
# that sends the same hello each time (OpenSSL, curl, Go, Python) finds it here without the
# parsing and sorting below. Emptied when full, so a client varying its hellos cannot grow it.
_MAX_AS_SENT: Final = 1024
_as_sent: dict[tuple[object, ...], str] = {}
_SUPPORTED_VERSIONS: Final = int(ExtensionType.SUPPORTED_VERSIONS)
_ALPN: Final = int(ExtensionType.ALPN)
_SIGNATURE_ALGORITHMS: Final = int(ExtensionType.SIGNATURE_ALGORITHMS)


def ja4(hello: ClientHello) -> str:
    extensions = dict(hello.extensions)
    key = (
        hello.legacy_version,
        hello.cipher_suites,
        tuple(extensions),
        extensions.get(_SUPPORTED_VERSIONS),
        extensions.get(_ALPN),
        extensions.get(_SIGNATURE_ALGORITHMS),
    )
    found = _as_sent.get(key)
    if found is None:
        if len(_as_sent) >= _MAX_AS_SENT:
            _as_sent.clear()
        found = _as_sent[key] = _ja4_of(hello, extensions)
    return found


def _ja4_of(hello: ClientHello, extensions: dict[int, bytes]) -> str:
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
