"""`outwork keys generate` to a file: PKCS#8 PEM, 0600 from the first byte, encrypted on
request, never over an existing file without --force."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from outwork.ops import OpsError
from outwork.ops.files import PRIVATE, write_file
from tests.conftest import ROOT
from tests.ops.conftest import openssl, outwork, refused

# What `openssl pkey -text` says of each type.
EXPECTED = {
    "ec-p256": "Private-Key: (256 bit",
    "ec-p384": "Private-Key: (384 bit",
    "rsa-2048": "Private-Key: (2048 bit",
    "rsa-3072": "Private-Key: (3072 bit",
    "rsa-4096": "Private-Key: (4096 bit",
    "ed25519": "ED25519 Private-Key:",
}


@pytest.mark.parametrize("key_type", sorted(EXPECTED))
def test_each_type_is_a_valid_pkcs8_key_readable_only_by_its_owner(
    key_type: str, tmp_path: Path
) -> None:
    result = outwork("keys", "generate", "--type", key_type, "--out", "k.pem", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key = tmp_path / "k.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, not encrypted
    check = openssl("pkey", "-in", str(key), "-check", "-noout")
    if key_type != "ed25519":  # openssl cannot -check an Ed25519 key; -text parses it
        assert check.returncode == 0 and "Key is valid" in check.stdout + check.stderr
    text = openssl("pkey", "-in", str(key), "-text", "-noout").stdout
    assert text.startswith(EXPECTED[key_type])
    # The fingerprint printed is the SHA-256 of the public key openssl derives.
    spki = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout

    assert f"public key sha256: {hashlib.sha256(spki).hexdigest()}" in result.stdout


def test_the_mode_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    """Under umask 000 the key is still 0600 (and so is every moment of it: the temporary file
    is created with that mode, see outwork.ops.files.write_file)."""
    code = (
        "import os, sys; os.umask(0); from outwork.cli import main;"
        " sys.argv = ['outwork', 'keys', 'generate', '--type', 'ec-p256', '--out', 'k.pem'];"
        " main()"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
    )
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_write_file_never_exposes_the_bytes_under_another_mode(tmp_path: Path) -> None:
    """The temporary file is opened O_EXCL with the final mode: a name an attacker planted
    (a symlink to a file they can read) makes the write fail, not follow."""
    target = tmp_path / "k.pem"
    write_file(target, b"secret", PRIVATE)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(OpsError, match="already exists"):
        write_file(target, b"other", PRIVATE)
    assert target.read_bytes() == b"secret"
    write_file(target, b"other", PRIVATE, overwrite=True)
    assert target.read_bytes() == b"other"
    (tmp_path / "lure").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OpsError, match="already exists"):
        write_file(tmp_path / "lure", b"secret", PRIVATE)
    assert not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem", "lure"]


def test_encrypted_key_with_env_and_file_passphrases(tmp_path: Path) -> None:
    env = {"OPS_PW": "correct horse"}
    result = outwork(
        "keys", "generate", "--type", "rsa-2048", "--out", "k.pem",
        "--passphrase", "env:OPS_PW", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    key = tmp_path / "k.pem"
    assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ok = openssl("pkey", "-in", str(key), "-passin", "env:OPS_PW", "-check", "-noout", env=env)
    assert ok.returncode == 0 and "Key is valid" in ok.stdout + ok.stderr
    bad = openssl("pkey", "-in", str(key), "-passin", "pass:wrong", "-noout")
    assert bad.returncode != 0
    (tmp_path / "pw").write_text("from file\n")
    result = outwork(
        "keys", "generate", "--type", "ec-p256", "--out", "k2.pem",
        "--passphrase", f"file:{tmp_path / 'pw'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ok = openssl("pkey", "-in", str(tmp_path / "k2.pem"), "-passin", "pass:from file", "-noout")
    assert ok.returncode == 0, ok.stderr


def test_refusals_write_nothing(tmp_path: Path) -> None:
    (tmp_path / "taken.pem").write_text("keep me")
    line = refused(
        outwork("keys", "generate", "--type", "ec-p256", "--out", "taken.pem", cwd=tmp_path)
    )
    assert line == "outwork: taken.pem: already exists (use --force to replace it)"
    assert (tmp_path / "taken.pem").read_text() == "keep me"
    for reference, message in (
        ("env:OPS_UNSET_VARIABLE", "env:OPS_UNSET_VARIABLE: the environment variable is not set"),
        ("hunter2", "a secret reference is env:NAME or file:PATH"),
        ("file:/nonexistent/pw", "cannot read /nonexistent/pw"),
    ):
        line = refused(
            outwork(
                "keys",
                "generate",
                "--type",
                "ec-p256",
                "--out",
                "new.pem",
                "--passphrase",
                reference,
                cwd=tmp_path,
            )  # fmt: skip
        )
        assert message in line and "hunter2" not in line
    line = refused(
        outwork("keys", "generate", "--type", "ec-p256", "--out", "no/such/dir/k.pem", cwd=tmp_path)
    )
    assert "no such folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.pem"]
    # --force replaces, still 0600 whatever the old file's mode was.
    result = outwork(
        "keys", "generate", "--type", "ec-p256", "--out", "taken.pem", "--force", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "taken.pem").stat().st_mode) == 0o600
    assert (tmp_path / "taken.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_an_unknown_type_is_a_usage_error(tmp_path: Path) -> None:
    result = outwork("keys", "generate", "--type", "rsa-1024", "--out", "k.pem", cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "k.pem").exists()
