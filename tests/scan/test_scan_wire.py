"""Properties of the scanner's sans-I/O pieces: what it writes is valid TLS (read back by the
engine's own parser), what it reads is bounded and raises only `ScanProtocolError`, and a
heartbeat's bytes are never kept beyond its 3-byte header."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.scan import wire
from outwork.scan.runner import TargetError, parse_target
from outwork.tls.codec import Reader
from outwork.tls.enums import ContentType, ExtensionType
from outwork.tls.messages import pull_client_hello

SETTINGS = settings(max_examples=200, deadline=None)

suites = st.lists(
    st.sampled_from(sorted(wire.SUITES_TLS12) + sorted(wire.SUITES_TLS13)),
    min_size=1,
    max_size=40,
    unique=True,
)
groups = st.lists(st.sampled_from(sorted(wire.GROUPS)), min_size=1, max_size=12, unique=True)


@SETTINGS
@given(
    version=st.sampled_from([wire.TLS10, wire.TLS11, wire.TLS12, wire.TLS13]),
    suites=suites,
    groups=groups,
    heartbeat=st.booleans(),
    renegotiation=st.booleans(),
    compression=st.sampled_from([(0,), (1, 0)]),
    name=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){0,2}", fullmatch=True),
    share=st.none() | st.sampled_from(sorted(wire.SHAREABLE_GROUPS)),
)
def test_client_hello_is_read_back_by_the_engine(
    version, suites, groups, heartbeat, renegotiation, compression, name, share
):
    spec = wire.HelloSpec(
        version,
        tuple(suites),
        tuple(groups),
        server_name=name,
        heartbeat=heartbeat,
        renegotiation_info=renegotiation,
        compression=compression,
        share_group=share,
    )
    message = wire.client_hello(spec)
    r = Reader(message)
    assert r.uint8() == 1
    with r.block(3) as body:
        hello = pull_client_hello(body)
    assert hello.legacy_version == min(version, wire.TLS12)
    assert hello.cipher_suites == tuple(suites)
    assert hello.legacy_compression_methods == bytes(compression)
    extensions = dict(hello.extensions)
    assert (ExtensionType.HEARTBEAT in extensions) is heartbeat
    assert (ExtensionType.RENEGOTIATION_INFO in extensions) is renegotiation
    assert (ExtensionType.SUPPORTED_VERSIONS in extensions) is (version == wire.TLS13)
    assert (ExtensionType.SERVER_NAME in extensions) is (name is not None)
    assert extensions[ExtensionType.SUPPORTED_GROUPS][2:] == b"".join(
        g.to_bytes(2, "big") for g in groups
    )


def _record(content_type: int, payload: bytes) -> bytes:
    return struct.pack("!BHH", content_type, 0x0303, len(payload)) + payload


records = st.lists(
    st.tuples(st.sampled_from([20, 21, 22, 23, 24]), st.binary(max_size=600)), max_size=8
)


@SETTINGS
@given(records=records, cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=10))
def test_record_reader_is_independent_of_chunking(records, cuts):
    stream = b"".join(_record(t, p) for t, p in records)
    reader = wire.RecordReader()
    got: list[wire.Record] = []
    previous = 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        got.extend(reader.feed(stream[previous:cut]))
        previous = cut
    assert [(r.content_type, r.length) for r in got] == [(t, len(p)) for t, p in records]
    for rec, (t, payload) in zip(got, records, strict=True):
        if t == ContentType.HEARTBEAT:
            assert rec.fragment == payload[:3]  # never more than the header is kept
        else:
            assert rec.fragment == payload


@SETTINGS
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_record_reader_raises_only_its_own_error(data, step):
    reader = wire.RecordReader()
    try:
        for i in range(0, len(data), step):
            for rec in reader.feed(data[i : i + step]):
                assert rec.length <= wire.MAX_RECORD_LENGTH
    except wire.ScanProtocolError:
        pass


@SETTINGS
@given(st.binary(max_size=400))
def test_message_parsers_raise_only_their_own_error(data):
    for parse in (wire.parse_server_hello, wire.parse_certificate12):
        try:
            parse(data)
        except wire.ScanProtocolError:
            pass
    wire.parse_ske_group(data)
    wire.parse_alert(data)
    handshake = wire.HandshakeReader()
    try:
        handshake.feed(data)
    except wire.ScanProtocolError:
        pass


@SETTINGS
@given(
    version=st.sampled_from([wire.TLS10, wire.TLS11, wire.TLS12]),
    suite=st.integers(0, 0xFFFF),
    compression=st.integers(0, 255),
    extensions=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=6),
)
def test_server_hello_round_trip(version, suite, compression, extensions):
    exts = b"".join(struct.pack("!HH", t, len(b)) + b for t, b in extensions.items())
    body = struct.pack("!H", version) + bytes(32) + b"\x00" + struct.pack("!HB", suite, compression)
    if extensions:
        body += struct.pack("!H", len(exts)) + exts
    try:
        hello = wire.parse_server_hello(body)
    except wire.ScanProtocolError:
        # Only a supported_versions or key_share extension too short to read may refuse it.
        assert {ExtensionType.SUPPORTED_VERSIONS, ExtensionType.KEY_SHARE} & set(extensions)
        return
    assert hello.suite == suite and hello.compression == compression
    assert hello.extensions == extensions
    if ExtensionType.SUPPORTED_VERSIONS not in extensions:
        assert hello.version == version


@SETTINGS
@given(
    header=st.binary(min_size=0, max_size=3),
    carried=st.integers(0, 100),
    size=st.integers(0, 20000),
)
def test_leaked_count_is_bounded(header, carried, size):
    leaked = wire.leaked_in_response(header, carried, size)
    assert 0 <= leaked <= max(size - 3, 0)
    if len(header) < 3 or header[0] != wire.HEARTBEAT_RESPONSE:
        assert leaked == 0
    else:
        assert leaked <= int.from_bytes(header[1:3], "big")


@SETTINGS
@given(
    host=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True) | st.ip_addresses().map(str),
    port=st.integers(1, 65535),
)
def test_parse_target_round_trip(host, port):
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    target = parse_target(text)
    assert (target.host, target.port, target.scheme) == (host, port, "https")
    assert target.target == text


@SETTINGS
@given(st.text(max_size=60))
def test_parse_target_raises_only_target_error(text):
    try:
        target = parse_target(text)
    except TargetError:
        return
    assert 0 < target.port < 65536 and target.host


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://backend.internal", ("backend.internal", 443, "https")),
        ("http://10.0.0.5:8080/health", ("10.0.0.5", 8080, "http")),
        ("[::1]:8443", ("::1", 8443, "https")),
    ],
)
def test_parse_target_forms(text, expected):
    t = parse_target(text)
    assert (t.host, t.port, t.scheme) == expected


@pytest.mark.parametrize("text", ["a:b:443", "[nothost]:443", "-x:1", "ho st:1", "x@y:1", ":443"])
def test_parse_target_refuses(text):
    with pytest.raises(TargetError):
        parse_target(text)


def test_record_cap() -> None:
    reader = wire.RecordReader()
    header = struct.pack("!BHH", 22, 0x0303, wire.MAX_RECORD_LENGTH + 1)
    with pytest.raises(wire.ScanProtocolError, match="record of"):
        reader.feed(header)
    assert wire.RecordReader().feed(struct.pack("!BHH", 22, 0x0303, wire.MAX_RECORD_LENGTH)) == []


def test_handshake_buffer_cap() -> None:
    reader = wire.HandshakeReader()
    message = b"\x0b" + (wire.MAX_HANDSHAKE_BUFFER - 4).to_bytes(3, "big")
    assert reader.feed(message) == []
    chunk = bytes(2**14)
    with pytest.raises(wire.ScanProtocolError, match="more handshake data"):
        for _ in range(wire.MAX_HANDSHAKE_BUFFER // len(chunk) + 1):
            reader.feed(chunk)
    too_long = b"\x0b" + (wire.MAX_HANDSHAKE_BUFFER + 1).to_bytes(3, "big")
    with pytest.raises(wire.ScanProtocolError, match="handshake message of"):
        wire.HandshakeReader().feed(too_long)


def test_unreadable_certificate_is_a_finding() -> None:
    from outwork.scan.result import TargetResult, certificate_info

    result = TargetResult("127.0.0.1", 443, reachable=True, tls=True, tls_versions=["1.2"])
    result.certificate = certificate_info([b"\x30\x03not a certificate"])
    assert result.certificate["days_left"] is None
    assert [f.id for f in result.findings()] == ["not-tested", "not-tested", "cert-unreadable"]
    assert result.to_json()["verdict"] == "WARNINGS"
