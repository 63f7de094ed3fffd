"""`outwork hash api-key` and `outwork hash password`: the secret from stdin, a hash that the
config takes and that the filters accept with that secret."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import msgspec
from argon2 import PasswordHasher

from outwork.filters.auth_basic import BasicUser


def outwork_hash(kind: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "outwork", "hash", kind], input=stdin, capture_output=True,
        timeout=60,
    )  # fmt: skip


def test_api_key_hash() -> None:
    got = outwork_hash("api-key", b"my-key\n")
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"sha256:" + hashlib.sha256(b"my-key").hexdigest().encode() + b"\n"


def test_password_hash_is_argon2id_and_verifies() -> None:
    got = outwork_hash("password", "pässword\n".encode())
    assert got.returncode == 0, got.stderr
    hashed = got.stdout.decode().strip()
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "pässword")
    msgspec.convert({"name": "ops", "hash": hashed}, BasicUser, strict=True)  # the config takes it
    assert b"p\xc3\xa4ssword" not in got.stdout + got.stderr


def test_empty_secrets_are_refused() -> None:
    for kind in ("api-key", "password"):
        got = outwork_hash(kind, b"\n")
        assert got.returncode == 2 and b"empty" in got.stderr
