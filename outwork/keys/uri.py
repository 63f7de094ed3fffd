"""RFC 7512 PKCS#11 URIs: `pkcs11:token=outwork;object=api-2026;type=private?pin-source=...`.

The URI names a key on a token; the signer (`outwork.keys.pkcs11_signer`) resolves it. Parsing is
strict about syntax (RFC 7512 section 2.3 grammar: `;` between path attributes, `&` between
query attributes, only the characters the grammar allows, well-formed percent-encoding, no
duplicated standard attribute) and lenient about meaning: attributes it does not know (vendor
attributes) are kept, not refused.

Every error is a `ValueError` whose message names the attribute but never echoes a value, so
that a malformed `pin-value` cannot end up in a log.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from urllib.parse import quote

SCHEME = "pkcs11:"
# The URI comes from configuration, not from a peer; the cap only keeps a mistake (a whole
# file pasted into the setting) from turning into a confusing error much later.
MAX_URI_LENGTH = 8192

OBJECT_TYPES = frozenset({"public", "private", "cert", "secret-key", "data"})

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~*")
_RES_AVAIL = frozenset(":[]@!$'()+,=")
# pk11-pchar (path values) and pk11-qchar (query values), without pct-encoded.
_PATH_CHARS = _UNRESERVED | _RES_AVAIL | {"&"}
_QUERY_CHARS = _UNRESERVED | _RES_AVAIL | {"/", "?", "|"}
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_HEX = frozenset(string.hexdigits)

# Path attribute name -> field name; all are UTF-8 text except the ones handled below.
_PATH_TEXT = {
    "token": "token",
    "manufacturer": "manufacturer",
    "serial": "serial",
    "model": "model",
    "library-manufacturer": "library_manufacturer",
    "library-description": "library_description",
    "object": "object",
    "slot-description": "slot_description",
    "slot-manufacturer": "slot_manufacturer",
}
_PATH_SPECIAL = frozenset({"type", "id", "slot-id", "library-version"})
_QUERY_TEXT = {
    "pin-source": "pin_source",
    "pin-value": "pin_value",
    "module-name": "module_name",
    "module-path": "module_path",
}


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed PKCS#11 URI. `None` means the attribute was absent (matches anything)."""

    # Path: which token and which object.
    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    library_manufacturer: str | None = None
    library_description: str | None = None
    library_version: tuple[int, int] | None = None
    object: str | None = None
    type: str | None = None
    id: bytes | None = None
    slot_description: str | None = None
    slot_manufacturer: str | None = None
    slot_id: int | None = None
    # Query: how to reach it.
    pin_source: str | None = None
    pin_value: str | None = field(default=None, repr=False)  # a secret: never in repr()
    module_name: str | None = None
    module_path: str | None = None
    # Attributes this parser does not know, in order, values percent-decoded.
    vendor_path: tuple[tuple[str, bytes], ...] = ()
    vendor_query: tuple[tuple[str, bytes], ...] = ()

    def display(self) -> str:
        """The URI for messages and logs: path attributes and module-path, never a PIN."""
        parts = [
            f"{name}={quote(value, safe='')}"
            for name, value in (
                ("token", self.token),
                ("serial", self.serial),
                ("object", self.object),
                ("type", self.type),
            )
            if value is not None
        ]
        if self.id is not None:
            parts.append("id=" + "".join(f"%{b:02X}" for b in self.id))
        if self.slot_id is not None:
            parts.append(f"slot-id={self.slot_id}")
        text = SCHEME + ";".join(parts)
        if self.module_path is not None:
            text += "?module-path=" + quote(self.module_path, safe="/")
        return text


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse an RFC 7512 PKCS#11 URI; raises ValueError (and nothing else) when malformed."""
    if not isinstance(text, str):
        raise ValueError("a PKCS#11 URI must be a string")
    if len(text) > MAX_URI_LENGTH:
        raise ValueError(f"PKCS#11 URI longer than {MAX_URI_LENGTH} characters")
    if text[: len(SCHEME)].lower() != SCHEME:
        raise ValueError("not a PKCS#11 URI: it must start with 'pkcs11:'")
    rest = text[len(SCHEME) :]
    if "#" in rest:
        raise ValueError("PKCS#11 URI must not have a fragment ('#')")
    path, has_query, query = rest.partition("?")

    values: dict[str, object] = {}
    vendor_path: list[tuple[str, bytes]] = []
    vendor_query: list[tuple[str, bytes]] = []

    for name, raw in _attributes(path, ";", _PATH_CHARS, "path"):
        if name in _PATH_TEXT:
            _store(values, _PATH_TEXT[name], name, _text(_decode(raw, name), name))
        elif name == "type":
            kind = _text(_decode(raw, name), name).lower()
            if kind not in OBJECT_TYPES:
                raise ValueError(
                    f"PKCS#11 URI attribute 'type' must be one of {', '.join(sorted(OBJECT_TYPES))}"
                )
            _store(values, "type", name, kind)
        elif name == "id":
            _store(values, "id", name, _decode(raw, name))
        elif name == "slot-id":
            _store(values, "slot_id", name, _number(raw, name))
        elif name == "library-version":
            _store(values, "library_version", name, _version(raw))
        elif name in _QUERY_TEXT:
            raise ValueError(f"PKCS#11 URI attribute '{name}' belongs in the query, after '?'")
        else:
            vendor_path.append((name, _decode(raw, name)))

    if has_query:
        for name, raw in _attributes(query, "&", _QUERY_CHARS, "query"):
            if name in _QUERY_TEXT:
                _store(values, _QUERY_TEXT[name], name, _text(_decode(raw, name), name))
            elif name in _PATH_TEXT or name in _PATH_SPECIAL:
                raise ValueError(f"PKCS#11 URI attribute '{name}' belongs in the path, before '?'")
            else:
                vendor_query.append((name, _decode(raw, name)))

    if "pin_source" in values and "pin_value" in values:
        raise ValueError("PKCS#11 URI has both 'pin-source' and 'pin-value'; use one")
    return Pkcs11Uri(
        **values,  # type: ignore[arg-type]
        vendor_path=tuple(vendor_path),
        vendor_query=tuple(vendor_query),
    )


def _attributes(
    part: str, separator: str, allowed: frozenset[str], where: str
) -> list[tuple[str, str]]:
    """Split one component into (lower-case name, raw value) pairs, checking the characters."""
    if part == "":
        return []
    pairs = []
    for position, item in enumerate(part.split(separator), 1):
        if item == "":
            raise ValueError(f"PKCS#11 URI has an empty {where} attribute (#{position})")
        name, has_value, raw = item.partition("=")
        if not has_value:
            raise ValueError(f"PKCS#11 URI {where} attribute #{position} has no '='")
        if name == "" or not set(name) <= _NAME_CHARS:
            raise ValueError(f"PKCS#11 URI {where} attribute #{position} has an invalid name")
        name = name.lower()
        bad = set(raw) - allowed - {"%"}
        if bad:
            raise ValueError(
                f"PKCS#11 URI attribute '{name}' has a character that must be percent-encoded"
            )
        pairs.append((name, raw))
    return pairs


def _decode(raw: str, name: str) -> bytes:
    """Strict percent-decoding: '%' must be followed by two hex digits."""
    out = bytearray()
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError(f"PKCS#11 URI attribute '{name}' has a malformed %-escape")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(ord(char))  # ASCII only: the caller checked the character set
            i += 1
    return bytes(out)


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"PKCS#11 URI attribute '{name}' is not valid UTF-8") from None


def _number(raw: str, name: str) -> int:
    if raw == "" or not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise ValueError(f"PKCS#11 URI attribute '{name}' must be a decimal number")
    return int(raw)


def _version(raw: str) -> tuple[int, int]:
    major, dot, minor = raw.partition(".")
    return (
        _number(major, "library-version"),
        _number(minor, "library-version") if dot else 0,
    )


def _store(values: dict[str, object], key: str, name: str, value: object) -> None:
    if key in values:
        raise ValueError(f"PKCS#11 URI attribute '{name}' appears more than once")
    values[key] = value
