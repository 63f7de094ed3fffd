"""`check` (and `serve`, and every reload) warn when a secret file can be read by other users:
listener keys, upstream client-certificate keys, session-ticket key files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from outwork.keys.ticket_keys import FileTicketKeys
from tests.tls.pki import CertAuthority

CONFIG = """\
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls:
      certificates: [{cert: server.pem, key: server.key}]
      session_tickets: {key_file: tickets.json}
routes:
  - {match: {path_prefix: /}, upstream: api}
upstreams:
  api:
    targets: ["https://127.0.0.1:9443"]
    tls:
      ca: ca.pem
      client_cert: {cert: client.pem, key: client.key}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    ca = CertAuthority("secret files CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    ca.issue().write(tmp_path, "server")
    ca.issue().write(tmp_path, "client")
    FileTicketKeys(tmp_path / "tickets.json", 12 * 3600).encryption_key(time.time())
    for name in ("server.key", "client.key", "tickets.json"):
        (tmp_path / name).chmod(0o600)
    path = tmp_path / "outwork.yaml"
    path.write_text(CONFIG)
    return path


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_owner_only_secrets_give_no_warning(config: Path) -> None:
    result = check(config)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


@pytest.mark.parametrize(
    ("name", "line", "key"),
    [
        ("server.key", 5, "listeners[0].tls.certificates[0].key"),
        ("client.key", 14, "upstreams.api.tls.client_cert.key"),
        ("tickets.json", 6, "listeners[0].tls.session_tickets.key_file"),
    ],
)
@pytest.mark.parametrize(
    ("mode", "readers"), [(0o644, "its group and others"), (0o640, "its group"), (0o604, "others")]
)
def test_a_secret_readable_by_others_is_warned_about(
    config: Path, name: str, line: int, key: str, mode: int, readers: str
) -> None:
    secret = config.parent / name
    secret.chmod(mode)
    result = check(config)
    assert (result.returncode, result.stdout) == (0, "ok\n")  # a warning, not an error
    assert result.stderr == (
        f"{config}:{line}: {key}: warning: {secret} is readable by {readers}"
        f" (mode {mode:04o}): only its owner should read it (chmod 600)\n"
    )
