"""`outwork incident` renews every certificate the gateway holds: both of a listener that serves
an RSA and an ECDSA certificate (`openssl s_client` asking for each signature algorithm gets a
new one), both of a listener with one certificate per SNI name, and an upstream's client
certificate for mTLS (the backend sees the new one after the reload); a client certificate
whose key is not the gateway's is listed "to renew by hand". `incident install` matches each
chain to its new key and refuses, before anything changes, a chain that matches none."""

from __future__ import annotations

import json
import os
import re
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from outwork.ops import OpsError
from outwork.ops.install import rewrite_certificate, rewrite_client_certificate
from tests.conftest import Backend, Gateway, gateway_config
from tests.ops.conftest import Token, openssl, outwork, refused
from tests.ops.test_incident import REASON, state_of, statuses
from tests.ops.test_install import TOKEN_ENV, admin_address, run_ok, serial_of
from tests.proxy.test_upstream_tls import TlsBackend, make_tls_backend  # noqa: F401

PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def make_cert(tmp_path: Path, name: str, key_type: str, *hosts: str) -> tuple[Path, Path]:
    """A file key of `key_type` and its certificate from the internal CA in tmp_path/ca."""
    if not (tmp_path / "ca" / "ca.pem").exists():
        run_ok("ca", "init", "ca", cwd=tmp_path)
    run_ok("keys", "generate", "--type", key_type, "--out", f"{name}.key", cwd=tmp_path)
    names = [arg for host in hosts for arg in ("--name", host)]
    run_ok("certs", "csr", "--key", f"{name}.key", *names, "--out", f"{name}.csr", cwd=tmp_path)
    run_ok("ca", "issue", "ca", "--csr", f"{name}.csr", "--out", f"{name}.pem", cwd=tmp_path)
    return tmp_path / f"{name}.pem", tmp_path / f"{name}.key"


def make_token_cert(tmp_path: Path, token: Token, name: str, host: str) -> tuple[Path, str]:
    """The same with an ECDSA P-256 key in the HSM: the certificate, and the key's URI."""
    uri = token.uri(name)
    run_ok("keys", "generate", "--type", "ec-p256", "--out", uri, cwd=tmp_path, env=token.env)
    run_ok("certs", "csr", "--key", uri, "--name", host, "--out", f"{name}.csr", cwd=tmp_path,
           env=token.env)  # fmt: skip
    run_ok("ca", "issue", "ca", "--csr", f"{name}.csr", "--out", f"{name}.pem", cwd=tmp_path)
    return tmp_path / f"{name}.pem", uri


def served(gateway: Gateway, listener: str, tmp_path: Path, *args: str) -> x509.Certificate:
    """The leaf `openssl s_client` gets from the listener (TLS 1.3) with these options."""
    port = gateway.urls[listener].rsplit(":", 1)[1]
    result = openssl("s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-CAfile",
                     str(tmp_path / "ca" / "ca.pem"), "-verify_return_error", *args)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    block = PEM_BLOCK.search(result.stdout)
    assert block is not None, result.stdout
    return x509.load_pem_x509_certificate(block.group(0).encode())


def by_algorithm(gateway: Gateway, tmp_path: Path) -> dict[str, x509.Certificate]:
    """The leaf of listener `public` for a client that verifies only RSA-PSS, and only ECDSA."""
    return {
        kind: served(gateway, "public", tmp_path, "-servername", "api.test", "-sigalgs", algs)
        for kind, algs in (("rsa", "RSA-PSS+SHA256"), ("ecdsa", "ECDSA+SHA256"))
    }


def start_with_the_ca(
    gateway: Gateway, tmp_path: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """`incident start --ca` run to its end; the state it leaves, every step done."""
    result = outwork("incident", "start", "-c", str(gateway.config_file), "--reason", REASON,
                     "--ca", "ca", "--admin", admin_address(gateway), cwd=tmp_path,
                     env={**TOKEN_ENV, **(env or {})})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    state = state_of(gateway.config_file)
    assert set(statuses(state).values()) == {"done"}
    return state


def listener_config(
    backend_url: str,
    tmp_path: Path,
    listeners: dict[str, list[tuple[Path, Path | str]]],
    **extra: Any,
) -> str:
    config = gateway_config(
        backend_url,
        listeners=[
            {
                "name": name,
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": str(c), "key": str(k)} for c, k in entries]},
            }
            for name, entries in listeners.items()
        ],
        admin={"bind": "127.0.0.1:0", "token": "env:OUTWORK_ADMIN_TOKEN"},
        logging={"security_events": str(tmp_path / "security.jsonl")},
        **extra,
    )
    return yaml.safe_dump(config, sort_keys=False)


def test_every_certificate_of_every_listener_is_renewed(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    token: Token,
) -> None:
    # An RSA key in a file and an ECDSA key in the HSM: each new key goes where the old one is.
    both: list[tuple[Path, Path | str]] = [
        make_cert(tmp_path, "rsa", "rsa-3072", "api.test"),
        make_token_cert(tmp_path, token, "several-ecdsa", "api.test"),
    ]
    per_name: list[tuple[Path, Path | str]] = [
        make_cert(tmp_path, "a", "ec-p256", "a.test"),
        make_cert(tmp_path, "b", "ec-p256", "b.test"),
    ]
    text = listener_config(make_backend().url, tmp_path, {"public": both, "names": per_name})
    gateway = make_gateway(text, env={**TOKEN_ENV, **token.env})
    before = by_algorithm(gateway, tmp_path)
    assert isinstance(before["rsa"].public_key(), rsa.RSAPublicKey)
    assert isinstance(before["ecdsa"].public_key(), ec.EllipticCurvePublicKey)

    state = start_with_the_ca(gateway, tmp_path, token.env)
    assert [p["id"] for p in state["certificates"]] == ["public", "public#2", "names", "names#2"]
    rsa_plan, ecdsa_plan = state["certificates"][:2]
    assert Path(rsa_plan["new_key"]).parent == tmp_path
    assert ecdsa_plan["new_key"].startswith("pkcs11:token=ops;object=several-ecdsa-incident-")

    # Each signature algorithm gets its own new certificate, with a key of the same kind.
    after = by_algorithm(gateway, tmp_path)
    for kind in ("rsa", "ecdsa"):
        assert after[kind].serial_number != before[kind].serial_number, kind
        assert after[kind].public_key() != before[kind].public_key(), kind
    new_rsa, new_ec = after["rsa"].public_key(), after["ecdsa"].public_key()
    assert isinstance(new_rsa, rsa.RSAPublicKey) and new_rsa.key_size == 3072
    assert isinstance(new_ec, ec.EllipticCurvePublicKey) and new_ec.curve.name == "secp256r1"
    # Each SNI name gets its renewed certificate, for that name.
    for host, (cert, _) in zip(("a.test", "b.test"), per_name, strict=True):
        leaf = served(gateway, "names", tmp_path, "-servername", host)
        assert leaf.serial_number != serial_of(cert)
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [host]
    # The config names the new files, each entry in its place; the advisory every certificate.
    written = yaml.safe_load(gateway.config_file.read_text())
    entries = [c for li in written["listeners"] for c in li["tls"]["certificates"]]
    assert [e["cert"] for e in entries] == [p["cert"] for p in state["certificates"]]
    advisory = Path(state["advisory"]).read_text()
    for plan in state["certificates"]:
        assert plan["fingerprint"] in advisory
    assert "| public certificate 2 | api.test |" in advisory
    assert "| names certificate 2 | b.test |" in advisory


def test_incident_install_matches_each_chain_to_its_key_and_refuses_one_that_matches_none(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    both: list[tuple[Path, Path | str]] = [
        make_cert(tmp_path, "rsa", "rsa-2048", "api.test"),
        make_cert(tmp_path, "ecdsa", "ec-p256", "api.test"),
    ]
    gateway = make_gateway(listener_config(make_backend().url, tmp_path, {"public": both}),
                           env=TOKEN_ENV)  # fmt: skip
    config, admin = str(gateway.config_file), admin_address(gateway)
    rsa_cert, rsa_key = both[0]
    line = refused(outwork("certs", "install", "-c", config, "--listener", "public", "--index",
                           "2", "--cert", str(rsa_cert), "--key", str(rsa_key), "--admin", admin,
                           cwd=tmp_path, env=TOKEN_ENV))  # fmt: skip
    assert "listener 'public' has 2 certificate(s): no number 3" in line
    result = outwork("incident", "start", "-c", config, "--reason", REASON, "--admin", admin,
                     cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    state = state_of(gateway.config_file)
    assert statuses(state)["install:public"] == statuses(state)["install:public#2"] == "waiting"
    rsa_plan, ec_plan = state["certificates"]
    for plan, out in ((rsa_plan, "rsa-new.pem"), (ec_plan, "ec-new.pem")):
        run_ok("ca", "issue", "ca", "--csr", plan["csr"], "--out", out, cwd=tmp_path)
    wrong, _ = make_cert(tmp_path, "stranger", "ec-p256", "api.test")
    config_before = gateway.config_file.read_bytes()
    state_before = state_of(gateway.config_file)

    # One good chain and one for no new key: refused before the good one goes in.
    line = refused(outwork("incident", "install", "-c", config, "ec-new.pem", str(wrong),
                           "--admin", admin, cwd=tmp_path, env=TOKEN_ENV))  # fmt: skip
    assert "not for any new key" in line and "stranger.pem" in line
    assert gateway.config_file.read_bytes() == config_before
    assert state_of(gateway.config_file) == state_before
    assert by_algorithm(gateway, tmp_path)["ecdsa"].serial_number == serial_of(both[1][0])

    # In any order, each chain goes to the certificate whose new key it certifies.
    result = outwork("incident", "install", "-c", config, "ec-new.pem", "rsa-new.pem",
                     "--admin", admin, cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses(state_of(gateway.config_file)).values()) == {"done"}
    after = by_algorithm(gateway, tmp_path)
    assert after["rsa"].serial_number == serial_of(tmp_path / "rsa-new.pem")
    assert after["ecdsa"].serial_number == serial_of(tmp_path / "ec-new.pem")
    entries = yaml.safe_load(gateway.config_file.read_text())["listeners"][0]["tls"]
    assert [e["cert"] for e in entries["certificates"]] == [
        str(tmp_path / "rsa-new.pem"),
        str(tmp_path / "ec-new.pem"),
    ]


def backend_seen(gateway: Gateway, tmp_path: Path) -> dict[str, Any]:
    """What the mTLS backend saw of the gateway's connection (its client certificate)."""
    context = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
    context.check_hostname = False  # the listener's certificate is for api.test
    url = gateway.urls["public"] + "/seen"
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        seen: dict[str, Any] = json.loads(response.read())
    return seen


def test_an_upstream_client_certificate_is_renewed_or_listed_to_renew_by_hand(
    make_gateway: Callable[..., Gateway],
    make_tls_backend: Callable[..., TlsBackend],  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    listener = make_cert(tmp_path, "listener", "ec-p256", "api.test")
    backend_cert, backend_key = make_cert(tmp_path, "backend", "ec-p256", "127.0.0.1")
    client_cert, client_key = make_cert(tmp_path, "client", "rsa-2048", "gateway.test")
    # Another client certificate, whose key the gateway does not own: put there by another user.
    (tmp_path / "theirs").mkdir()
    other_cert, other_key = make_cert(tmp_path / "theirs", "client", "ec-p256", "legacy.test")
    if os.geteuid() == 0:
        os.chown(other_key, 65534, 65534)
    else:
        (tmp_path / "theirs").chmod(0o500)
    ca = tmp_path / "ca" / "ca.pem"
    backend = make_tls_backend(backend_cert, backend_key, client_ca=ca)

    def upstream(target: str, cert: Path, key: Path) -> dict[str, Any]:
        mtls = {"ca": str(ca), "client_cert": {"cert": str(cert), "key": str(key)}}
        return {"targets": [target], "tls": mtls}

    upstreams = {
        "backend": upstream(backend.url, client_cert, client_key),
        "legacy": upstream("https://127.0.0.1:9", other_cert, other_key),
    }
    entries: list[tuple[Path, Path | str]] = [listener]
    text = listener_config(backend.url, tmp_path, {"public": entries}, upstreams=upstreams)
    gateway = make_gateway(text, env=TOKEN_ENV)
    seen = backend_seen(gateway, tmp_path)
    assert seen["client"] == "commonName=gateway.test"
    assert int(seen["client_serial"], 16) == serial_of(client_cert)

    result = outwork("incident", "start", "-c", str(gateway.config_file), "--reason", REASON,
                     "--dry-run", cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
    assert "to renew by hand upstream legacy (client certificate)" in result.stdout
    assert "upstream:backend" not in result.stdout  # steps are shown by their titles
    assert "upstream backend (client certificate): CSR" in result.stdout
    state = start_with_the_ca(gateway, tmp_path)
    plans = {p["id"]: p for p in state["certificates"]}
    renewed, by_hand = plans["upstream:backend"], plans["upstream:legacy"]
    assert (renewed["action"], by_hand["action"]) == ("renew", "by hand")
    assert "install:upstream:legacy" not in statuses(state)
    # After the reload, new connections to the backend present the new client certificate.
    deadline = time.monotonic() + 30
    while int(backend_seen(gateway, tmp_path)["client_serial"], 16) == serial_of(client_cert):
        assert time.monotonic() < deadline, gateway.stderr()  # until the reload serves
        time.sleep(0.1)
    seen = backend_seen(gateway, tmp_path)
    assert int(seen["client_serial"], 16) == serial_of(Path(renewed["cert"]))
    written = yaml.safe_load(gateway.config_file.read_text())["upstreams"]
    assert written["backend"]["tls"]["client_cert"]["key"] == renewed["new_key"]
    untouched = {"cert": str(other_cert), "key": str(other_key)}
    assert written["legacy"]["tls"]["client_cert"] == untouched
    advisory = Path(state["advisory"]).read_text()
    assert "upstream backend (client certificate)" in advisory
    assert renewed["fingerprint"] in advisory
    assert "### To renew by hand" in advisory and "upstream legacy (client certificate)" in advisory


LISTENERS_AND_UPSTREAMS = (
    "# top comment\n"
    "listeners:\n"
    "  - name: public\n"
    "    bind: 127.0.0.1:2\n"
    "    tls:\n"
    "      certificates:\n"
    "        - {cert: rsa.pem, key: rsa.key}  # RSA\n"
    "        - cert: 'ec.pem'   # ECDSA\n"
    "          key: ec.key\n"
    "upstreams:\n"
    "  backend:\n"
    "    targets: [https://127.0.0.1:3]\n"
    "    tls: {client_cert: {key: c.key, cert: c.pem}}  # mTLS\n"
)


@given(cert=st.text(min_size=1, max_size=60), key=st.text(min_size=1, max_size=60))
def test_rewrites_change_only_the_entry_named(cert: str, key: str) -> None:
    before = yaml.safe_load(LISTENERS_AND_UPSTREAMS)
    second = yaml.safe_load(rewrite_certificate(LISTENERS_AND_UPSTREAMS, "public", cert, key, 1))
    assert second["listeners"][0]["tls"]["certificates"] == [
        before["listeners"][0]["tls"]["certificates"][0],
        {"cert": cert, "key": key},
    ]
    assert second["upstreams"] == before["upstreams"]
    client = rewrite_client_certificate(LISTENERS_AND_UPSTREAMS, "backend", cert, key)
    assert yaml.safe_load(client)["upstreams"]["backend"]["tls"]["client_cert"] == {
        "key": key,
        "cert": cert,
    }
    assert yaml.safe_load(client)["listeners"] == before["listeners"]
    assert client.startswith("# top comment\n") and client.endswith("}  # mTLS\n")


def test_a_certificate_number_the_listener_does_not_have_is_refused() -> None:
    with pytest.raises(OpsError, match="has 2 certificate\\(s\\): no number 3"):
        rewrite_certificate(LISTENERS_AND_UPSTREAMS, "public", "x.pem", "x.key", 2)
    with pytest.raises(OpsError, match="upstream 'other' has no tls.client_cert"):
        rewrite_client_certificate(LISTENERS_AND_UPSTREAMS, "other", "x.pem", "x.key")
