"""Upstream TLS keys (README "Configuration", `upstreams.*.tls`): compiled into the engine's
ClientConfig, and every bad value refused with its file, line and key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from outwork.config.load import MAX_TRUST_STORE_FILE, SYSTEM_CA_BUNDLE, load_config
from outwork.config.source import ConfigError
from outwork.tls.enums import ProtocolVersion
from tests.tls.pki import CertAuthority

HEAD = """\
listeners:
  - name: public
    bind: 127.0.0.1:8080
routes:
  - match: {path_prefix: /}
    upstream: api
upstreams:
  api:
"""

FULL = (
    HEAD
    + """\
    targets: ["https://api.internal:8443", "https://10.0.0.7"]
    tls:
      ca: backends-ca.pem
      verify: true
      sni: api.internal
      client_cert: {cert: client.pem, key: client.key}
      min_version: "1.3"
      alpn: []
      session_resumption: false
"""
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("upstream-tls-files")
    backends = CertAuthority("backends CA")
    (folder / "backends-ca.pem").write_bytes(backends.cert.public_bytes(serialization.Encoding.PEM))
    CertAuthority("gateway clients CA").issue().write(folder, "client")
    return folder


def write(tmp_path: Path, files: Path, text: str) -> Path:
    for name in ("backends-ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes((files / name).read_bytes())
    (tmp_path / "client.key").chmod(0o600)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, files: Path, text: str) -> list[str]:
    path = write(tmp_path, files, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.format().replace(str(path), "config.yaml") for p in info.value.problems]


def test_every_key_compiles_into_the_engine_config(tmp_path: Path, files: Path) -> None:
    config = load_config(write(tmp_path, files, FULL))
    api = config.upstreams["api"]
    assert [(t.host, t.port) for t in api.targets] == [("api.internal", 8443), ("10.0.0.7", 443)]
    tls = api.tls
    assert tls is not None
    assert tls.server_name == "api.internal"
    assert tls.session_resumption is False
    client = tls.client
    assert client.verify is True
    assert [c.subject.rfc4514_string() for c in client.trust_roots] == ["CN=backends CA"]
    assert client.min_version is ProtocolVersion.TLS13
    assert client.alpn_protocols == ()
    assert client.client_certificate is not None
    assert config.warnings == ()


def test_defaults_use_the_system_trust_store(tmp_path: Path, files: Path) -> None:
    config = load_config(write(tmp_path, files, HEAD + '    targets: ["https://api.example"]\n'))
    api = config.upstreams["api"]
    assert api.targets[0].port == 443
    tls = api.tls
    assert tls is not None
    assert tls.server_name is None  # each target's host
    assert tls.session_resumption is True
    client = tls.client
    assert client.verify is True and client.client_certificate is None
    assert client.alpn_protocols == ("http/1.1",)
    assert client.min_version is ProtocolVersion.TLS12
    with open(SYSTEM_CA_BUNDLE, "rb") as bundle:
        assert len(client.trust_roots) == bundle.read().count(b"-----BEGIN CERTIFICATE-----")
    assert len(client.trust_roots) > 10


def test_http_targets_have_no_tls(tmp_path: Path, files: Path) -> None:
    config = load_config(write(tmp_path, files, HEAD + '    targets: ["http://127.0.0.1:9000"]\n'))
    assert config.upstreams["api"].tls is None


def test_rejects_mixed_schemes(tmp_path: Path, files: Path) -> None:
    text = HEAD + '    targets: ["https://a.internal", "http://b.internal:80"]\n'
    assert problems(tmp_path, files, text) == [
        "config.yaml:9: upstreams.api.targets[1]: http:// after https:// targets: the targets"
        " of an upstream are all http:// or all https:// (use two upstreams)"
    ]


def test_rejects_tls_for_plain_targets(tmp_path: Path, files: Path) -> None:
    text = HEAD + '    targets: ["http://a.internal"]\n    tls: {verify: true}\n'
    assert problems(tmp_path, files, text) == [
        "config.yaml:10: upstreams.api.tls: tls is set but the targets are http://"
        " (use https:// targets)"
    ]


def test_rejects_other_schemes(tmp_path: Path, files: Path) -> None:
    text = HEAD + '    targets: ["ftp://a.internal"]\n'
    assert problems(tmp_path, files, text) == [
        "config.yaml:9: upstreams.api.targets[0]: a target is http://host:port or https://host:port"
    ]


def test_rejects_bad_values_at_their_lines(tmp_path: Path, files: Path) -> None:
    (tmp_path / "not-pem.pem").write_text("hello\n")
    text = (
        HEAD
        + """\
    targets: ["https://a.internal"]
    tls:
      ca: not-pem.pem
      sni: "bad name!"
      client_cert: {cert: missing.pem, key: client.key}
      min_version: "1.1"
      alpn: [h2]
"""
    )
    found = problems(tmp_path, files, text)
    assert found[0].startswith(
        f"config.yaml:11: upstreams.api.tls.ca: {tmp_path / 'not-pem.pem'}: not a PEM certificate"
    )
    assert found[1:] == [
        "config.yaml:12: upstreams.api.tls.sni: invalid server name 'bad name!'",
        "config.yaml:13: upstreams.api.tls.client_cert.cert: file not found:"
        f" {tmp_path}/missing.pem",
        "config.yaml:14: upstreams.api.tls.min_version: unsupported TLS version '1.1'"
        ' (expected "1.2" or "1.3")',
        "config.yaml:15: upstreams.api.tls.alpn[0]: 'h2': upstream requests are HTTP/1.1"
        " (alpn: [http/1.1] or [])",
    ]


def test_rejects_an_unreadable_ca_file(tmp_path: Path, files: Path) -> None:
    text = HEAD + '    targets: ["https://a.internal"]\n    tls: {ca: nowhere.pem}\n'
    assert problems(tmp_path, files, text) == [
        f"config.yaml:10: upstreams.api.tls.ca: cannot read {tmp_path / 'nowhere.pem'}:"
        " No such file or directory"
    ]


def test_rejects_an_unknown_key(tmp_path: Path, files: Path) -> None:
    text = HEAD + '    targets: ["https://a.internal"]\n    tls:\n      verfiy: false\n'
    assert problems(tmp_path, files, text) == [
        'config.yaml:11: upstreams.api.tls.verfiy: unknown key; did you mean "verify"?'
    ]


def test_client_key_in_an_hsm_is_checked_at_load(tmp_path: Path, files: Path) -> None:
    text = FULL.replace("key: client.key", 'key: "pkcs11:token=nope;object=x"')
    (problem,) = problems(tmp_path, files, text)
    assert problem.startswith("config.yaml:14: upstreams.api.tls.client_cert.key: ")


def test_verify_false_is_accepted_with_a_loud_warning(tmp_path: Path, files: Path) -> None:
    text = HEAD + '    targets: ["https://a.internal"]\n    tls:\n      verify: false\n'
    path = write(tmp_path, files, text)
    config = load_config(path)
    tls = config.upstreams["api"].tls
    assert tls is not None and tls.client.verify is False and tls.client.trust_roots == ()
    (warning,) = config.warnings
    assert warning.startswith(f"{path}:11: upstreams.api.tls.verify: warning: verify: false:")
    check = subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(path)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout == "ok\n"
    assert warning in check.stderr


def test_rejects_a_ca_file_over_its_cap(tmp_path: Path, files: Path) -> None:
    (tmp_path / "huge.pem").write_bytes(b"\n" * (MAX_TRUST_STORE_FILE + 1))
    text = HEAD + '    targets: ["https://a.internal"]\n    tls: {ca: huge.pem}\n'
    assert problems(tmp_path, files, text) == [
        f"config.yaml:10: upstreams.api.tls.ca: {tmp_path / 'huge.pem'} is larger than"
        f" {MAX_TRUST_STORE_FILE} bytes"
    ]
