"""Bodies of the extensions the engine reads or writes, each parsed with its RFC bounds."""

from __future__ import annotations

from typing import Final

from outwork.tls.alerts import AlertDescription, TLSError, decode_error, illegal_parameter
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import MAX_KEY_SHARES, MAX_LIST_ENTRIES
from outwork.tls.enums import ExtensionType, HeartbeatMode
from outwork.tls.frozen import frozen
from outwork.tls.messages import Extension, pull_uint16_list

KeyShareEntry = tuple[int, bytes]

MAX_HOST_NAME: Final = 255  # RFC 6066 HostName<1..2^16-1>, but DNS names cap at 255
MAX_ALPN_NAME: Final = 255
# What a host_name may hold: ASCII letters and digits, "-", "." and "_" (deleted by translate:
# any byte left over is one it may not).
_HOST_NAME_BYTES: Final = b"-._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def pull_server_name(body: bytes, max_entries: int = MAX_LIST_ENTRIES) -> str | None:
    """RFC 6066 server_name: ServerName server_name_list<1..2^16-1>; one host_name at most."""
    size = len(body)
    if (
        size > 5
        and body[2] == 0
        and (body[0] << 8) | body[1] == size - 2
        and (body[3] << 8) | body[4] == size - 5
    ):
        # What clients send: a list of exactly one host_name (whose lengths both say so),
        # checked as the loop below checks each name.
        return _host_name(body[5:])
    r = Reader(body)
    host: str | None = None
    count = 0
    with r.block(2, 1) as names:
        while not names.at_end():
            count += 1
            if count > max_entries:
                raise decode_error(f"more than {max_entries} server names")
            name_type = names.uint8()
            name = names.opaque(2, 1)
            if name_type != 0:
                continue  # unknown name types are skipped (RFC 6066 3)
            if host is not None:
                raise illegal_parameter("more than one host_name in server_name")
            host = _host_name(name)
    r.expect_end("server_name")
    return host


def _host_name(name: bytes) -> str:
    """A host_name's bytes (1 or more), checked, as lower-case text."""
    if len(name) > MAX_HOST_NAME:
        raise decode_error("host_name too long")
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError as exc:
        raise decode_error("host_name is not ASCII") from exc
    if name.translate(None, _HOST_NAME_BYTES) or text.endswith("."):
        raise illegal_parameter("host_name is not a valid DNS name")
    return text.lower()


def push_server_name(host: str) -> bytes:
    w = Writer()
    with w.block(2):
        w.uint8(0)
        w.opaque(2, host.encode("ascii"))
    return w.getvalue()


def pull_supported_versions_client(body: bytes) -> tuple[int, ...]:
    r = Reader(body)
    versions = r.uint16_tuple(1, 2, 254)
    r.expect_end("supported_versions")
    return versions


def pull_uint16_list_ext(
    body: bytes, minimum: int, name: str, max_entries: int = MAX_LIST_ENTRIES
) -> tuple[int, ...]:
    """Groups, signature schemes: at most `max_entries`, refused from the length prefix."""
    r = Reader(body)
    values = pull_uint16_list(r, minimum, 2 * max_entries)
    r.expect_end(name)
    return values


def pull_key_share_client(
    body: bytes, max_entries: int = MAX_KEY_SHARES
) -> tuple[KeyShareEntry, ...]:
    """KeyShareEntry client_shares<0..2^16-1>: empty is allowed (RFC 8446 4.2.8), the server
    then asks for a share with a HelloRetryRequest. Each entry is a group and its
    key_exchange<1..2^16-1>."""
    r = Reader(body)
    entries = r.typed_opaques(2, 0, max_entries, "key shares")
    r.expect_end("key_share")
    for _, key_exchange in entries:
        if not key_exchange:
            raise decode_error("length 0 below minimum 1")
    groups = [g for g, _ in entries]
    if len(set(groups)) != len(groups):
        raise illegal_parameter("key_share offers the same group twice")
    return tuple(entries)


def push_key_share_entry(group: int, key_exchange: bytes) -> bytes:
    w = Writer()
    w.uint16(group)
    w.opaque(2, key_exchange)
    return w.getvalue()


def push_key_share_client(entries: tuple[KeyShareEntry, ...]) -> bytes:
    w = Writer()
    with w.block(2):
        for group, key in entries:
            w.uint16(group)
            w.opaque(2, key)
    return w.getvalue()


def pull_alpn(body: bytes, max_entries: int = MAX_LIST_ENTRIES) -> tuple[str, ...]:
    """RFC 7301: ProtocolName protocol_name_list<2..2^16-1>, each name <1..2^8-1>."""
    r = Reader(body)
    names: list[str] = []
    with r.block(2, 2) as sub:
        while not sub.at_end():
            if len(names) == max_entries:
                raise decode_error(f"more than {max_entries} ALPN protocol names")
            raw = sub.opaque(1, 1, MAX_ALPN_NAME)
            names.append(raw.decode("latin-1"))
    r.expect_end("application_layer_protocol_negotiation")
    return tuple(names)


def push_alpn(names: tuple[str, ...]) -> bytes:
    w = Writer()
    with w.block(2):
        for name in names:
            w.opaque(1, name.encode("latin-1"))
    return w.getvalue()


def pull_cookie(body: bytes) -> bytes:
    r = Reader(body)
    cookie = r.opaque(2, 1, 0xFFFF)
    r.expect_end("cookie")
    return cookie


def push_cookie(cookie: bytes) -> bytes:
    w = Writer()
    w.opaque(2, cookie)
    return w.getvalue()


def pull_heartbeat_mode(body: bytes) -> HeartbeatMode:
    r = Reader(body)
    mode = r.uint8()
    r.expect_end("heartbeat")
    try:
        return HeartbeatMode(mode)
    except ValueError as exc:
        raise illegal_parameter(f"unknown heartbeat mode {mode}") from exc


def pull_psk_key_exchange_modes(body: bytes) -> bytes:
    r = Reader(body)
    modes = r.opaque(1, 1, 0xFF)
    r.expect_end("psk_key_exchange_modes")
    return modes


# Identities looked at in one ClientHello; more is not a client's need.
MAX_PSK_IDENTITIES: Final = 8


@frozen
class OfferedPsks:
    identities: tuple[tuple[bytes, int], ...]  # (identity, obfuscated_ticket_age)
    binders: tuple[bytes, ...]
    binders_length: int  # the binders block with its length prefix: the ClientHello's tail


def _pull_psk_identity(r: Reader) -> tuple[bytes, int]:
    identity = r.opaque(2, 1)
    return identity, r.uint32()


def pull_pre_shared_key_client(body: bytes) -> OfferedPsks:
    """RFC 8446 4.2.11: PskIdentity identities<7..2^16-1>; PskBinderEntry binders<33..2^16-1>."""
    r = Reader(body)
    identities = r.vector(2, _pull_psk_identity, 7)
    binders_start = r.remaining()
    binders = r.vector(2, lambda sub: sub.opaque(1, 32, 255), 33)
    r.expect_end("pre_shared_key")
    if len(identities) != len(binders):
        raise illegal_parameter("pre_shared_key identities and binders differ in number")
    if len(identities) > MAX_PSK_IDENTITIES:
        raise illegal_parameter("too many pre_shared_key identities")
    return OfferedPsks(tuple(identities), tuple(binders), binders_start)


def push_pre_shared_key_client(
    identities: tuple[tuple[bytes, int], ...], binders: tuple[bytes, ...]
) -> bytes:
    w = Writer()
    with w.block(2):
        for identity, age in identities:
            w.opaque(2, identity)
            w.uint32(age)
    with w.block(2):
        for binder in binders:
            w.opaque(1, binder)
    return w.getvalue()


# The extension types as plain ints: compared for every extension of every ClientHello,
# an IntEnum member costs some 100 ns per comparison where an int costs 15. Final: compiled,
# a Final name is a C static, any other module global a dict lookup at each use.
_ALPN: Final = int(ExtensionType.ALPN)
_COOKIE: Final = int(ExtensionType.COOKIE)
_EARLY_DATA: Final = int(ExtensionType.EARLY_DATA)
_EC_POINT_FORMATS: Final = int(ExtensionType.EC_POINT_FORMATS)
_EXTENDED_MASTER_SECRET: Final = int(ExtensionType.EXTENDED_MASTER_SECRET)
_HEARTBEAT: Final = int(ExtensionType.HEARTBEAT)
_KEY_SHARE: Final = int(ExtensionType.KEY_SHARE)
_PRE_SHARED_KEY: Final = int(ExtensionType.PRE_SHARED_KEY)
_PSK_KEY_EXCHANGE_MODES: Final = int(ExtensionType.PSK_KEY_EXCHANGE_MODES)
_RENEGOTIATION_INFO: Final = int(ExtensionType.RENEGOTIATION_INFO)
_SERVER_NAME: Final = int(ExtensionType.SERVER_NAME)
_SESSION_TICKET: Final = int(ExtensionType.SESSION_TICKET)
_SIGNATURE_ALGORITHMS: Final = int(ExtensionType.SIGNATURE_ALGORITHMS)
_SIGNATURE_ALGORITHMS_CERT: Final = int(ExtensionType.SIGNATURE_ALGORITHMS_CERT)
_SUPPORTED_GROUPS: Final = int(ExtensionType.SUPPORTED_GROUPS)
_SUPPORTED_VERSIONS: Final = int(ExtensionType.SUPPORTED_VERSIONS)


@frozen
class ClientHelloOffer:
    """What a ClientHello asks for, parsed once, GREASE values kept (the caller filters)."""

    server_name: str | None
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    key_shares: tuple[KeyShareEntry, ...]
    signature_algorithms: tuple[int, ...]
    signature_algorithms_cert: tuple[int, ...]
    alpn: tuple[str, ...]
    cookie: bytes | None
    heartbeat_mode: HeartbeatMode | None
    psk_modes: bytes
    has_pre_shared_key: bool
    has_early_data: bool
    pre_shared_key_last: bool
    renegotiation_info: bytes | None = None
    extended_master_secret: bool = False
    ec_point_formats: bytes | None = None
    session_ticket: bytes | None = None
    pre_shared_key: OfferedPsks | None = None
    has_key_share: bool = False  # present, possibly empty (RFC 8446 4.2.8: then a retry)


def parse_client_hello_extensions(
    extensions: tuple[Extension, ...],
    max_entries: int = MAX_LIST_ENTRIES,
    max_key_shares: int = MAX_KEY_SHARES,
) -> ClientHelloOffer:
    server_name = None
    versions: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    shares: tuple[KeyShareEntry, ...] = ()
    sig_algs: tuple[int, ...] = ()
    sig_algs_cert: tuple[int, ...] = ()
    alpn: tuple[str, ...] = ()
    cookie = None
    heartbeat = None
    psk_modes = b""
    has_psk = has_early = ems = has_key_share = False
    renegotiation_info = point_formats = session_ticket = None
    offered_psks = None
    for position, (ext_type, body) in enumerate(extensions):
        if ext_type == _SERVER_NAME:
            server_name = pull_server_name(body, max_entries)
        elif ext_type == _SUPPORTED_VERSIONS:
            versions = pull_supported_versions_client(body)
        elif ext_type == _SUPPORTED_GROUPS:
            groups = pull_uint16_list_ext(body, 2, "supported_groups", max_entries)
        elif ext_type == _KEY_SHARE:
            shares = pull_key_share_client(body, max_key_shares)
            has_key_share = True
        elif ext_type == _SIGNATURE_ALGORITHMS:
            sig_algs = pull_uint16_list_ext(body, 2, "signature_algorithms", max_entries)
        elif ext_type == _SIGNATURE_ALGORITHMS_CERT:
            sig_algs_cert = pull_uint16_list_ext(body, 2, "signature_algorithms_cert", max_entries)
        elif ext_type == _ALPN:
            alpn = pull_alpn(body, max_entries)
        elif ext_type == _COOKIE:
            cookie = pull_cookie(body)
        elif ext_type == _HEARTBEAT:
            heartbeat = pull_heartbeat_mode(body)
        elif ext_type == _PSK_KEY_EXCHANGE_MODES:
            psk_modes = pull_psk_key_exchange_modes(body)
        elif ext_type == _PRE_SHARED_KEY:
            if position != len(extensions) - 1:
                # RFC 8446 4.2.11: pre_shared_key MUST be the last extension.
                raise illegal_parameter("pre_shared_key is not the last extension")
            has_psk = True
            offered_psks = pull_pre_shared_key_client(body)
        elif ext_type == _EARLY_DATA:
            if body:
                raise decode_error("early_data in ClientHello must be empty")
            has_early = True
        elif ext_type == _RENEGOTIATION_INFO:
            renegotiation_info = _pull_one_opaque(body, 1, 0, "renegotiation_info")
        elif ext_type == _EXTENDED_MASTER_SECRET:
            if body:
                raise decode_error("extended_master_secret must be empty")
            ems = True
        elif ext_type == _EC_POINT_FORMATS:
            point_formats = _pull_one_opaque(body, 1, 1, "ec_point_formats")
        elif ext_type == _SESSION_TICKET:
            session_ticket = body
    psk_last = has_psk
    return ClientHelloOffer(
        server_name,
        versions,
        groups,
        shares,
        sig_algs,
        sig_algs_cert,
        alpn,
        cookie,
        heartbeat,
        psk_modes,
        has_psk,
        has_early,
        psk_last,
        renegotiation_info,
        ems,
        point_formats,
        session_ticket,
        offered_psks,
        has_key_share,
    )


def _pull_one_opaque(body: bytes, width: int, minimum: int, name: str) -> bytes:
    r = Reader(body)
    value = r.opaque(width, minimum)
    r.expect_end(name)
    return value


def require(condition: bool, alert: AlertDescription, reason: str) -> None:
    if not condition:
        raise TLSError(alert, reason)
