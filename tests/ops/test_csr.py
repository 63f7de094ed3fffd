"""`outwork certs csr`: the DER encoder, the name parser, and requests checked by cryptography and
by `openssl req -verify`."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from asn1crypto import core as asn1  # type: ignore[import-untyped]
from asn1crypto import parser as asn1_parser  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.keys.file_signer import FileSigner
from outwork.ops import OpsError, der
from outwork.ops.csr import MAX_NAMES, build_csr, parse_name, parse_names
from tests.ops.conftest import openssl, outwork, refused

# ----- the DER encoder, against asn1crypto (a decoder we did not write) -----------------


@given(st.binary(max_size=70000))
def test_octet_string_and_lengths(data: bytes) -> None:
    encoded = der.octet_string(data)
    assert asn1.OctetString.load(encoded).native == data
    assert asn1.OctetString(data).dump() == encoded


@given(st.integers(min_value=-(2**300), max_value=2**300))
def test_integers(n: int) -> None:
    assert der.integer(n) == asn1.Integer(n).dump()


@given(
    st.integers(0, 2).flatmap(
        lambda first: st.tuples(
            st.just(first),
            st.integers(0, 39 if first < 2 else 2**40),
            st.lists(st.integers(0, 2**64), max_size=8),
        )
    )
)
def test_object_identifiers(arcs: tuple[int, int, list[int]]) -> None:
    dotted = ".".join(str(a) for a in (arcs[0], arcs[1], *arcs[2]))
    assert der.oid(dotted) == asn1.ObjectIdentifier(dotted).dump()


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_sequences_sets_and_context_tags(items: list[bytes]) -> None:
    octets = [der.octet_string(i) for i in items]
    assert asn1.Sequence.load(der.sequence(*octets)).contents == b"".join(octets)
    # parse(): (class, method, tag, header, contents, trailer); strict: nothing left over.
    assert asn1_parser.parse(der.set_of(*octets), strict=True)[:3] == (0, 1, 17)
    assert asn1_parser.parse(der.set_of(*octets))[4] == b"".join(sorted(octets))
    tagged = asn1_parser.parse(der.context(3, b"".join(octets)), strict=True)
    assert tagged[:3] == (2, 1, 3) and tagged[4] == b"".join(octets)


def test_bit_string_null_and_bad_input() -> None:
    assert asn1.BitString.load(der.bit_string(b"\xff\x01")).contents == b"\x00\xff\x01"
    assert der.null() == asn1.Null().dump()
    for bad in ("1", "3.1", "1.40", "1.-2"):
        with pytest.raises(ValueError):
            der.oid(bad)


# ----- names --------------------------------------------------------------------------

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
DNS_NAMES = (
    st.lists(LABEL, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda n: not n.rsplit(".", 1)[-1].isdigit())
)


@given(st.text(max_size=80))
def test_any_text_is_a_name_or_an_ops_error(text: str) -> None:
    try:
        name = parse_name(text)
    except OpsError as exc:
        assert str(exc).startswith("--name ")
        return
    assert isinstance(name, (x509.DNSName, x509.IPAddress))


@given(DNS_NAMES, st.booleans())
def test_dns_names_and_wildcards(name: str, wildcard: bool) -> None:
    text = f"*.{name}" if wildcard else name
    assert parse_name(text.upper()) == x509.DNSName(text)


@given(st.ip_addresses())
def test_ip_addresses_are_ip_sans_not_dns_names(address: ipaddress.IPv4Address) -> None:
    assert parse_name(str(address)) == x509.IPAddress(address)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "bad name",
        "-a.test",
        "a-.test",
        "a..test",
        "*.*.test",
        "a.*.test",
        "x" * 64 + ".test",
        "10.0.0",
        "1.2.3.400",
        "[::1]",
        "fe80::1%eth0",
        "bücher.test",
        "a_b.test",
        "http://a.test",
    ],
)
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(OpsError):
        parse_name(bad)


def test_names_are_deduplicated_and_capped() -> None:
    assert parse_names(["a.test", "A.test", "a.test."]) == [x509.DNSName("a.test")]
    with pytest.raises(OpsError, match=f"more than {MAX_NAMES} names"):
        parse_names([f"h{i}.test" for i in range(MAX_NAMES + 1)])
    assert len(parse_names([f"h{i}.test" for i in range(MAX_NAMES)])) == MAX_NAMES


# ----- requests ----------------------------------------------------------------------

SIGNER = FileSigner(ec.generate_private_key(ec.SECP256R1()))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.one_of(DNS_NAMES, st.ip_addresses().map(str)), min_size=1, max_size=8),
    st.text(min_size=1, max_size=30),
)
def test_built_requests_parse_verify_and_carry_the_names(names: list[str], org: str) -> None:
    parsed = parse_names(names)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, org)])
    csr = x509.load_der_x509_csr(build_csr(SIGNER, parsed, subject))
    assert csr.is_signature_valid
    assert csr.subject == subject
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == parsed


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_csr_for_a_file_key_verifies_with_openssl(key_type: str, tmp_path: Path) -> None:
    assert (
        outwork("keys", "generate", "--type", key_type, "--out", "k.pem", cwd=tmp_path).returncode
        == 0
    )
    result = outwork(
        "certs",
        "csr",
        "--key",
        "k.pem",
        "--name",
        "api.example.test",
        "--name",
        "192.0.2.7",
        "--name",
        "2001:db8::1",
        "--subject",
        "CN=api,O=Example Ltd",
        "--out",
        "r.csr",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    check = openssl("req", "-in", str(tmp_path / "r.csr"), "-verify", "-noout", "-text")
    assert check.returncode == 0, check.stderr
    assert "verify OK" in check.stderr + check.stdout
    assert "DNS:api.example.test, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:1" in (
        check.stdout
    )
    # RFC 4514 writes the last RDN first; openssl prints them in DER order.
    assert "Subject: O = Example Ltd, CN = api" in check.stdout
    # The request's public key is the key file's.
    pub_csr = openssl("req", "-in", str(tmp_path / "r.csr"), "-pubkey", "-noout").stdout
    pub_key = openssl("pkey", "-in", str(tmp_path / "k.pem"), "-pubout").stdout
    assert pub_csr == pub_key


def test_bad_csr_input_is_refused_with_one_line_and_nothing_written(tmp_path: Path) -> None:
    assert (
        outwork("keys", "generate", "--type", "ec-p256", "--out", "k.pem", cwd=tmp_path).returncode
        == 0
    )
    (tmp_path / "junk.pem").write_text("not a key\n")
    (tmp_path / "locked.pem").write_text("x")
    (tmp_path / "locked.pem").chmod(0)
    (tmp_path / "taken.csr").write_text("keep me")
    cases = {
        "not a DNS name or an IP address": ["--key", "k.pem", "--name", "bad name"],
        "not a valid IP address": ["--key", "k.pem", "--name", "10.0.0"],
        "cannot read the key": ["--key", "missing.pem", "--name", "a.test"],
        "not a PEM private key": ["--key", "junk.pem", "--name", "a.test"],
        "--subject: not an RFC 4514 name": [
            "--key",
            "k.pem",
            "--name",
            "a.test",
            "--subject",
            "nonsense",
        ],
        "the key is not encrypted": [
            "--key",
            "k.pem",
            "--name",
            "a.test",
            "--passphrase",
            "env:HOME",
        ],
    }
    env = {"OPS_PW": "right", "OPS_WRONG": "wrong"}
    assert outwork(
        "keys", "generate", "--type", "ec-p256", "--out", "enc.pem", "--passphrase", "env:OPS_PW",
        cwd=tmp_path, env=env,
    ).returncode == 0  # fmt: skip
    cases["enc.pem: wrong passphrase for the key"] = [
        "--key", "enc.pem", "--name", "a.test", "--passphrase", "env:OPS_WRONG",
    ]  # fmt: skip
    cases["enc.pem: the key is encrypted; give its passphrase"] = [
        "--key", "enc.pem", "--name", "a.test",
    ]  # fmt: skip
    for message, args in cases.items():
        line = refused(outwork("certs", "csr", *args, "--out", "r.csr", cwd=tmp_path, env=env))
        assert "wrong" not in line.replace("wrong passphrase", "")
        assert message in line
        assert not (tmp_path / "r.csr").exists()
    line = refused(
        outwork(
            "certs", "csr", "--key", "k.pem", "--name", "a.test", "--out", "taken.csr", cwd=tmp_path
        )
    )
    assert "already exists" in line
    assert (tmp_path / "taken.csr").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
