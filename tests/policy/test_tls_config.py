"""Listener TLS keys (README "Configuration"): compiled into the engine's ServerConfig, and
every bad value refused with its file, line and key path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from outwork.config.load import MAX_CLIENT_CA_FILE, load_config, parse_duration
from outwork.config.source import ConfigError
from outwork.keys.ticket_keys import FileTicketKeys
from outwork.tls.clientauth import ClientAuth
from outwork.tls.config import DEFAULT_GROUPS
from outwork.tls.enums import NamedGroup, ProtocolVersion
from outwork.tls.tickets import RotatingTicketKeys
from tests.tls.pki import CertAuthority

FULL = """\
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls:
      certificates:
        - {cert: cert.pem, key: key.pem}
      heartbeat: false
      alpn: ["http/1.1"]
      min_version: "1.3"
      require_ems: false
      strict_sni: true
      groups: [x25519, secp384r1, x448]
      client_auth: required
      client_ca: clients-ca.pem
      session_tickets:
        enabled: true
        key_file: keys/ticket-keys.json
        rotation: 6h
        lifetime: 90m
routes:
  - match: {path_prefix: /}
    upstream: demo
upstreams:
  demo: {targets: ["http://127.0.0.1:9000"]}
logging:
  security_events: "-"
  access_log: logs/access.jsonl
"""

MINIMAL = """\
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls:
      certificates: [{cert: cert.pem, key: key.pem}]
routes: []
upstreams: {}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls-files")
    ca = CertAuthority()
    ca.issue().write(folder, "server")
    clients = CertAuthority("client CA")
    (folder / "clients-ca.pem").write_bytes(clients.cert.public_bytes(serialization.Encoding.PEM))
    return folder


def write(tmp_path: Path, files: Path, text: str) -> Path:
    shutil.copy(files / "server.pem", tmp_path / "cert.pem")
    shutil.copy(files / "server.key", tmp_path / "key.pem")
    shutil.copy(files / "clients-ca.pem", tmp_path / "clients-ca.pem")
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "logs").mkdir(exist_ok=True)
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
    tls = config.listeners[0].tls
    assert tls is not None
    assert tls.min_version is ProtocolVersion.TLS13
    assert tls.require_ems is False and tls.strict_sni is True
    assert tls.groups == (NamedGroup.X25519, NamedGroup.SECP384R1, NamedGroup.X448)
    assert tls.client_auth is ClientAuth.REQUIRED
    assert [c.subject.rfc4514_string() for c in tls.client_ca] == ["CN=client CA"]
    assert isinstance(tls.ticket_keys, FileTicketKeys)
    assert tls.ticket_keys._path == tmp_path / "keys" / "ticket-keys.json"
    assert tls.ticket_keys._period == 6 * 3600
    assert tls.ticket_lifetime == 90 * 60
    assert config.access_log == str(tmp_path / "logs" / "access.jsonl")
    assert not (tmp_path / "keys" / "ticket-keys.json").exists()  # loading writes nothing


def test_defaults(tmp_path: Path, files: Path) -> None:
    config = load_config(write(tmp_path, files, MINIMAL))
    tls = config.listeners[0].tls
    assert tls is not None
    assert tls.min_version is ProtocolVersion.TLS12
    assert tls.require_ems is True and tls.strict_sni is False
    assert tls.groups == DEFAULT_GROUPS
    assert tls.client_auth is ClientAuth.NONE and tls.client_ca == ()
    assert isinstance(tls.ticket_keys, RotatingTicketKeys) and tls.ticket_lifetime == 7200
    assert config.access_log is None


def test_each_listener_gets_its_own_ticket_keys(tmp_path: Path, files: Path) -> None:
    listener = (
        "  - name: second\n    bind: 127.0.0.1:8444\n"
        "    tls: {certificates: [{cert: cert.pem, key: key.pem}]}\n"
    )
    text = MINIMAL.replace("routes:", listener + "routes:")
    first, second = load_config(write(tmp_path, files, text)).listeners
    assert first.tls is not None and second.tls is not None
    assert first.tls.ticket_keys is not second.tls.ticket_keys


def test_tickets_disabled(tmp_path: Path, files: Path) -> None:
    text = MINIMAL.replace(
        "key: key.pem}]", "key: key.pem}]\n      session_tickets: {enabled: false}"
    )
    tls = load_config(write(tmp_path, files, text)).listeners[0].tls
    assert tls is not None and tls.ticket_keys is None


def test_unquoted_version_is_accepted(tmp_path: Path, files: Path) -> None:
    text = FULL.replace('min_version: "1.3"', "min_version: 1.2")
    tls = load_config(write(tmp_path, files, text)).listeners[0].tls
    assert tls is not None and tls.min_version is ProtocolVersion.TLS12


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), (45, 45), ("1.5h", 5400)],
)
def test_durations(value: str | int, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      client_ca: clients-ca.pem\n",
            "",
            "config.yaml:13: listeners[0].tls.client_auth: client_auth: required needs client_ca"
            " (the CA bundle that issues client certificates)",
        ),
        (
            "client_auth: required",
            "client_auth: none",
            "config.yaml:14: listeners[0].tls.client_ca: client_ca is set but client_auth is"
            " none: set client_auth to optional or required (or remove client_ca)",
        ),
        (
            "client_auth: required",
            "client_auth: mandatory",
            "config.yaml:13: listeners[0].tls.client_auth: invalid value 'mandatory'"
            " (expected none, optional or required)",
        ),
        (
            "groups: [x25519, secp384r1, x448]",
            "groups: [x25519, X25519Kyber768]",
            "config.yaml:12: listeners[0].tls.groups[1]: unknown group 'X25519Kyber768' (known:"
            " X25519MLKEM768, x25519, secp256r1, secp384r1, x448, secp521r1)",
        ),
        (
            "groups: [x25519, secp384r1, x448]",
            "groups:\n        - x25519\n        - x25519",
            "config.yaml:14: listeners[0].tls.groups[1]: group 'x25519' is listed twice",
        ),
        (
            "groups: [x25519, secp384r1, x448]",
            "groups: []",
            "config.yaml:12: listeners[0].tls.groups: expected a list of length >= 1",
        ),
        (
            'min_version: "1.3"',
            'min_version: "1.1"',
            "config.yaml:9: listeners[0].tls.min_version: unsupported TLS version '1.1'"
            ' (expected "1.2" or "1.3")',
        ),
        (
            "rotation: 6h",
            "rotation: 6 hours",
            "config.yaml:18: listeners[0].tls.session_tickets.rotation: invalid duration"
            " '6 hours' (expected e.g. 90s, 30m, 12h, 7d)",
        ),
        (
            "rotation: 6h",
            "rotation: -5",
            "config.yaml:18: listeners[0].tls.session_tickets.rotation: invalid duration -5:"
            " must be positive",
        ),
        (
            "lifetime: 90m",
            "lifetime: 8d",
            "config.yaml:19: listeners[0].tls.session_tickets.lifetime: '8d' is longer than the"
            " maximum 604800s",
        ),
        (
            "require_ems: false",
            "require_ems: no thanks",
            "config.yaml:10: listeners[0].tls.require_ems: expected `bool`, got `str`",
        ),
        (
            "        enabled: true\n",
            "        enabled: true\n        reuse: always\n",
            "config.yaml:17: listeners[0].tls.session_tickets.reuse: unknown key",
        ),
    ],
)
def test_rejects_bad_value_at_its_line(
    tmp_path: Path, files: Path, old: str, new: str, expected: str
) -> None:
    assert old in FULL
    assert problems(tmp_path, files, FULL.replace(old, new)) == [expected]


def test_rejects_missing_or_non_ca_client_ca(tmp_path: Path, files: Path) -> None:
    (problem,) = problems(tmp_path, files, FULL.replace("clients-ca.pem", "nope.pem"))
    assert problem.startswith("config.yaml:14: listeners[0].tls.client_ca: cannot read ")
    (problem,) = problems(
        tmp_path, files, FULL.replace("client_ca: clients-ca.pem", "client_ca: cert.pem")
    )
    assert problem == (
        f"config.yaml:14: listeners[0].tls.client_ca: {tmp_path / 'cert.pem'}: CN=localhost"
        " is not a CA certificate"
    )


def test_rejects_unparsable_pkcs11_uri_at_the_key_line(tmp_path: Path, files: Path) -> None:
    text = FULL.replace("{cert: cert.pem, key: key.pem}", '{cert: cert.pem, key: "pkcs11:token"}')
    assert problems(tmp_path, files, text) == [
        "config.yaml:6: listeners[0].tls.certificates[0].key: PKCS#11 URI path attribute #1"
        " has no '='"
    ]


def test_rejects_missing_pkcs11_module(tmp_path: Path, files: Path) -> None:
    text = FULL + "pkcs11: {module: /nowhere/libpkcs11.so}\n"
    assert problems(tmp_path, files, text) == [
        "config.yaml:28: pkcs11.module: PKCS#11 module not found: /nowhere/libpkcs11.so"
    ]


def test_rejects_one_key_file_for_two_listeners(tmp_path: Path, files: Path) -> None:
    second = (
        "  - name: second\n    bind: 127.0.0.1:8444\n    tls:\n"
        "      certificates: [{cert: cert.pem, key: key.pem}]\n"
        "      session_tickets: {key_file: keys/ticket-keys.json}\n"
    )
    text = FULL.replace("routes:", second + "routes:")
    (problem,) = problems(tmp_path, files, text)
    assert problem.startswith("config.yaml:24: listeners[1].tls.session_tickets.key_file: ")
    assert problem.endswith("is already the key file of listener 'public'")


def test_rejects_key_file_of_another_rotation_or_unreadable(tmp_path: Path, files: Path) -> None:
    write(tmp_path, files, FULL)
    key_file = tmp_path / "keys" / "ticket-keys.json"
    key_file.write_text(json.dumps({"period_seconds": 3600, "keys": []}))
    (problem,) = problems(tmp_path, files, FULL)
    assert problem.startswith("config.yaml:17: listeners[0].tls.session_tickets.key_file: ")
    assert "was made with rotation 3600s, not 21600s" in problem
    key_file.write_text("{not json")
    (problem,) = problems(tmp_path, files, FULL)
    assert "unreadable ticket key file" in problem


def test_rejects_key_file_in_a_missing_directory(tmp_path: Path, files: Path) -> None:
    text = FULL.replace("keys/ticket-keys.json", "nodir/ticket-keys.json")
    assert problems(tmp_path, files, text) == [
        f"config.yaml:17: listeners[0].tls.session_tickets.key_file: no such directory:"
        f" {tmp_path / 'nodir'}"
    ]


def test_rejects_access_log_in_a_missing_directory(tmp_path: Path, files: Path) -> None:
    text = FULL.replace("logs/access.jsonl", "nodir/access.jsonl")
    assert problems(tmp_path, files, text) == [
        f"config.yaml:27: logging.access_log: no such directory: {tmp_path / 'nodir'}"
    ]


def test_rejects_a_client_ca_bundle_over_its_cap(tmp_path: Path, files: Path) -> None:
    write(tmp_path, files, FULL)
    bundle = (tmp_path / "clients-ca.pem").read_bytes()
    (tmp_path / "big-ca.pem").write_bytes(bundle * (MAX_CLIENT_CA_FILE // len(bundle) + 1))
    assert problems(tmp_path, files, FULL.replace("clients-ca.pem", "big-ca.pem")) == [
        f"config.yaml:14: listeners[0].tls.client_ca: {tmp_path / 'big-ca.pem'} is larger than"
        f" {MAX_CLIENT_CA_FILE} bytes"
    ]
