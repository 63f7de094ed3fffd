"""The whole key flow, offline: keys generate -> certs csr -> ca issue -> a gateway serving the
certificate and key (a passphrase-protected file, and a key inside a SoftHSM2 token), checked
by curl against the internal CA only."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import Backend, Gateway, gateway_config, require_tool
from tests.ops.conftest import Token, outwork


def run_ok(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = outwork(*args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def serve_and_fetch(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    certificate: dict[str, str],
    env: dict[str, str],
) -> subprocess.CompletedProcess[bytes]:
    backend = make_backend()
    config = gateway_config(
        backend.url,
        listeners=[
            {"name": "public", "bind": "127.0.0.1:0", "tls": {"certificates": [certificate]}}
        ],
    )
    gateway = make_gateway(config, env=env)
    port = urlsplit(gateway.urls["public"]).port
    return subprocess.run(
        [
            require_tool("curl"),
            "-sS",
            "--cacert",
            str(tmp_path / "ca" / "ca.pem"),
            "--resolve",
            f"api.test:{port}:127.0.0.1",
            f"https://api.test:{port}/",
        ],  # fmt: skip
        capture_output=True,
        timeout=30,
    )


def test_file_key_with_a_passphrase_end_to_end(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    env = {"API_KEY_PASSPHRASE": "flow test passphrase"}
    run_ok("keys", "generate", "--type", "ec-p256", "--out", "api.key",
           "--passphrase", "env:API_KEY_PASSPHRASE", cwd=tmp_path, env=env)  # fmt: skip
    run_ok("certs", "csr", "--key", "api.key", "--passphrase", "env:API_KEY_PASSPHRASE",
           "--name", "api.test", "--out", "api.csr", cwd=tmp_path, env=env)  # fmt: skip
    run_ok("ca", "init", "ca", cwd=tmp_path)
    run_ok("ca", "issue", "ca", "--csr", "api.csr", "--out", "api.pem", cwd=tmp_path)
    certificate = {"cert": "api.pem", "key": "api.key", "passphrase": "env:API_KEY_PASSPHRASE"}
    result = serve_and_fetch(make_backend, make_gateway, tmp_path, certificate, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello from the outwork demo backend\n"


def test_hsm_key_end_to_end(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    token: Token,
) -> None:
    uri = token.uri("flow-api")
    run_ok("keys", "generate", "--type", "ec-p256", "--out", uri, cwd=tmp_path, env=token.env)
    run_ok("certs", "csr", "--key", uri, "--name", "api.test", "--out", "api.csr",
           cwd=tmp_path, env=token.env)  # fmt: skip
    run_ok("ca", "init", "ca", cwd=tmp_path)
    run_ok("ca", "issue", "ca", "--csr", "api.csr", "--out", "api.pem", cwd=tmp_path)
    result = serve_and_fetch(
        make_backend, make_gateway, tmp_path, {"cert": "api.pem", "key": uri}, token.env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello from the outwork demo backend\n"
