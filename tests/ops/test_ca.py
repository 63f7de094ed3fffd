"""`outwork ca init` / `outwork ca issue`: the internal CA, checked with `openssl verify`."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.ops import OpsError
from outwork.ops.ca import MAX_CA_DAYS, MAX_CSR_FILE, MAX_LEAF_DAYS, read_csr
from tests.ops.conftest import openssl, outwork, refused


def run_ok(*args: str, cwd: Path) -> str:
    result = outwork(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    run_ok("ca", "init", "ca", cwd=tmp_path)
    return tmp_path / "ca"


def request(tmp_path: Path, *names: str, key_type: str = "ec-p256", stem: str = "leaf") -> Path:
    run_ok("keys", "generate", "--type", key_type, "--out", f"{stem}.key", cwd=tmp_path)
    args = [a for n in names for a in ("--name", n)]
    run_ok("certs", "csr", "--key", f"{stem}.key", *args, "--out", f"{stem}.csr", cwd=tmp_path)
    return tmp_path / f"{stem}.csr"


def test_init_makes_a_private_folder_and_a_constrained_ca(ca_dir: Path) -> None:
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert openssl("pkey", "-in", str(ca_dir / "ca.key"), "-check", "-noout").returncode == 0
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    # Self-signed, and openssl takes it as a trust anchor.
    assert (
        openssl("verify", "-CAfile", str(ca_dir / "ca.pem"), str(ca_dir / "ca.pem")).returncode == 0
    )


def test_init_refuses_a_folder_in_use(ca_dir: Path, tmp_path: Path) -> None:
    before = (ca_dir / "ca.pem").read_bytes()
    line = refused(outwork("ca", "init", "ca", cwd=tmp_path))
    assert "exists and is not an empty folder" in line
    assert (ca_dir / "ca.pem").read_bytes() == before


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048", "ed25519"])
def test_issued_leaf_verifies_for_server_and_client_use(
    ca_dir: Path, tmp_path: Path, key_type: str
) -> None:
    csr = request(tmp_path, "api.test", "*.api.test", "127.0.0.1", key_type=key_type)
    run_ok(
        "ca", "issue", "ca", "--csr", str(csr), "--out", "chain.pem", "--days", "30", cwd=tmp_path
    )
    chain_file = tmp_path / "chain.pem"
    chain = x509.load_pem_x509_certificates(chain_file.read_bytes())
    assert len(chain) == 2  # leaf + CA, in that order
    leaf, ca_cert = chain
    assert ca_cert == x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    leaf_file = tmp_path / "leaf.pem"
    leaf_file.write_bytes(chain_file.read_bytes().split(b"-----END CERTIFICATE-----")[0] + (
        b"-----END CERTIFICATE-----\n"))  # fmt: skip
    for purpose in ("sslserver", "sslclient"):
        result = openssl(
            "verify", "-CAfile", str(ca_dir / "ca.pem"), "-purpose", purpose, str(leaf_file)
        )
        assert result.returncode == 0, result.stdout + result.stderr
    result = openssl(
        "verify", "-CAfile", str(ca_dir / "ca.pem"), "-verify_hostname", "x.api.test",
        "-verify_ip", "127.0.0.1", str(leaf_file),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    ext = leaf.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.test", "*.api.test"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    )
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 30
    assert leaf.public_key() == x509.load_pem_x509_csr(csr.read_bytes()).public_key()


def test_serial_numbers_are_random(ca_dir: Path, tmp_path: Path) -> None:
    csr = request(tmp_path, "a.test")
    serials = set()
    for i in range(3):
        run_ok("ca", "issue", "ca", "--csr", str(csr), "--out", f"c{i}.pem", cwd=tmp_path)
        serials.add(
            x509.load_pem_x509_certificate((tmp_path / f"c{i}.pem").read_bytes()).serial_number
        )
    assert len(serials) == 3
    assert all(s.bit_length() > 64 for s in serials)  # CA/B: at least 64 random bits


def test_a_csr_with_a_bad_signature_is_not_issued(ca_dir: Path, tmp_path: Path) -> None:
    csr = request(tmp_path, "victim.test")
    der = bytearray(x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(Encoding.DER))
    # Change a name inside the signed part: the signature no longer matches.
    at = der.index(b"victim")
    der[at : at + 6] = b"attack"
    (tmp_path / "forged.csr").write_bytes(bytes(der))
    line = refused(
        outwork("ca", "issue", "ca", "--csr", "forged.csr", "--out", "x.pem", cwd=tmp_path)
    )
    assert line == "outwork: forged.csr: the CSR's signature does not verify; not issued"
    assert not (tmp_path / "x.pem").exists()


def test_issue_refusals(ca_dir: Path, tmp_path: Path) -> None:
    csr = request(tmp_path, "a.test")
    (tmp_path / "taken.pem").write_text("keep")
    (tmp_path / "junk.csr").write_text("junk")
    cases = [
        (["--csr", str(csr), "--out", "taken.pem"], "already exists"),
        (["--csr", "junk.csr", "--out", "x.pem"], "not a certificate signing request"),
        (["--csr", "missing.csr", "--out", "x.pem"], "cannot read"),
        (["--csr", str(csr), "--out", "x.pem", "--days", str(MAX_LEAF_DAYS + 1)],
         f"--days must be between 1 and {MAX_LEAF_DAYS}"),
        (["--csr", str(csr), "--out", "x.pem", "--days", "0"], "--days must be between"),
    ]  # fmt: skip
    for args, message in cases:
        assert message in refused(outwork("ca", "issue", "ca", *args, cwd=tmp_path))
    line = refused(
        outwork("ca", "issue", "nowhere", "--csr", str(csr), "--out", "x.pem", cwd=tmp_path)
    )
    assert "nowhere/ca.pem: cannot read" in line
    assert (tmp_path / "taken.pem").read_text() == "keep"
    assert not (tmp_path / "x.pem").exists()
    # The CA key replaced by another key: refused, not a certificate that chains to nothing.
    run_ok(
        "keys",
        "generate",
        "--type",
        "ec-p384",
        "--out",
        str(ca_dir / "ca.key"),
        "--force",
        cwd=tmp_path,
    )
    assert "is not the key of" in refused(
        outwork("ca", "issue", "ca", "--csr", str(csr), "--out", "x.pem", cwd=tmp_path)
    )
    assert not (tmp_path / "x.pem").exists()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | st.binary(max_size=2000).map(lambda b: b"-----BEGIN " + b))
def test_read_csr_takes_any_bytes_and_answers_a_csr_or_one_refusal(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csr"
        path.write_bytes(data)
        try:
            csr = read_csr(path)
        except OpsError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        else:
            assert csr.is_signature_valid


def test_a_csr_file_beyond_the_cap_is_refused_unread(tmp_path: Path) -> None:
    csr = request(tmp_path, "a.test")
    (tmp_path / "big.csr").write_bytes(csr.read_bytes() + b"\n" * MAX_CSR_FILE)
    with pytest.raises(OpsError, match=f"larger than {MAX_CSR_FILE} bytes"):
        read_csr(tmp_path / "big.csr")
    padded = csr.read_bytes()
    (tmp_path / "max.csr").write_bytes(padded + b"\n" * (MAX_CSR_FILE - len(padded)))
    assert read_csr(tmp_path / "max.csr").is_signature_valid


def test_ca_init_days_bounds(tmp_path: Path) -> None:
    for days in ("0", str(MAX_CA_DAYS + 1)):
        assert "--days must be between" in refused(
            outwork("ca", "init", "ca", "--days", days, cwd=tmp_path)
        )
    assert not (tmp_path / "ca").exists()
