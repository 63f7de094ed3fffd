"""`outwork incident` against a running gateway: new key (in the HSM when the current one is),
CSR, certificate from the internal CA, installed with no restart; session tickets from before
not resumed; revocation written into the config (an API key, a JWT and a password from before
refused 401 by the authenticate step, new ones accepted); advisory and scan report; a state
file that `status` reads, that refuses a second start, that a failed step leaves resumable;
`--dry-run` changes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import yaml
from argon2 import PasswordHasher
from cryptography import x509

from tests.conftest import Backend, Gateway, gateway_config
from tests.e2e.pki import make_pki
from tests.filters.jwks_server import serve_jwks
from tests.filters.test_auth_jwt import KEYS, jwk_of
from tests.ops.conftest import Token, outwork, refused
from tests.ops.test_install import (
    TOKEN_ENV,
    admin_address,
    audit_lines,
    issue_file_cert,
    run_ok,
    serial_of,
)

REASON = "OpenSSL heartbeat over-read on the edge hosts (CVE-2014-0160)"


def config_text(
    backend: Backend,
    tmp_path: Path,
    cert: Path,
    key: str,
    workers: int = 1,
    passphrase: str | None = None,
    **extra: Any,
) -> str:
    entry = {"cert": str(cert), "key": key, **({"passphrase": passphrase} if passphrase else {})}
    tls = {
        "certificates": [entry],
        # Shared by the workers, so a session resumes whichever worker takes the connection.
        "session_tickets": {"key_file": str(tmp_path / "tickets.json")},
    }
    config = gateway_config(
        backend.url,
        listeners=[{"name": "public", "bind": "127.0.0.1:0", "tls": tls}],
        admin={"bind": "127.0.0.1:0", "token": "env:OUTWORK_ADMIN_TOKEN"},
        workers=workers,
        logging={"security_events": str(tmp_path / "security.jsonl")},
        **extra,
    )
    return "# the operator's config: comments stay\n" + yaml.safe_dump(config, sort_keys=False)


def client(tmp_path: Path) -> ssl.SSLContext:
    """A client trusting the internal CA; its sessions resume only with the same context."""
    return ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))


def visit(
    gateway: Gateway, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[ssl.SSLSession | None, bool, int]:
    """One HTTPS request as a client that keeps its TLS session: (the session to offer next
    time, whether this one resumed, the serial of the certificate served)."""
    port = urlsplit(gateway.urls["public"]).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="api.test", session=session) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):  # the ticket comes after the handshake
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            serial = x509.load_der_x509_certificate(der).serial_number
            return tls.session, bool(tls.session_reused), serial


def state_of(config: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(config.with_name("outwork.incident.json").read_text())
    return data


def statuses(state: dict[str, Any]) -> dict[str, str]:
    return {step["id"]: step["status"] for step in state["steps"]}


# About 12 processes (CLI runs, two gateways of 2 workers, the HSM): 16 s on an idle machine,
# 60-70 s measured with 3 busy loops on its 2 cores, beyond the suite's 60 s default.
@pytest.mark.timeout(180)
def test_incident_with_the_internal_ca_on_two_workers_and_an_hsm_key(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    token: Token,
) -> None:
    run_ok("ca", "init", "ca", cwd=tmp_path)
    uri = token.uri("incident-api")
    run_ok("keys", "generate", "--type", "ec-p256", "--out", uri, cwd=tmp_path, env=token.env)
    run_ok("certs", "csr", "--key", uri, "--name", "api.test", "--out", "old.csr",
           cwd=tmp_path, env=token.env)  # fmt: skip
    run_ok("ca", "issue", "ca", "--csr", "old.csr", "--out", "old.pem", cwd=tmp_path)
    env = {**TOKEN_ENV, **token.env}
    text = config_text(make_backend(), tmp_path, tmp_path / "old.pem", uri, workers=2)
    gateway = make_gateway(text, env=env)
    old_serial = serial_of(tmp_path / "old.pem")
    context = client(tmp_path)
    session, _, served = visit(gateway, context)
    assert served == old_serial
    _, reused, _ = visit(gateway, context, session)
    assert reused  # before the incident, the session resumes (on either worker)

    admin = admin_address(gateway)
    result = outwork("incident", "start", "-c", str(gateway.config_file), "--reason", REASON,
                     "--ca", "ca", "--admin", admin, cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "plan" in result.stdout and "9/9" in result.stdout

    state = state_of(gateway.config_file)
    assert set(statuses(state).values()) == {"done"}
    assert state["status"] == "open"
    listener = state["certificates"][0]
    new_serial = serial_of(Path(listener["cert"]))
    # Every fresh handshake, whichever worker takes it, gets the new certificate; the session
    # from before is not resumed (the ticket keys that sealed it are gone from every worker).
    for _ in range(8):
        session_after, reused, served = visit(gateway, context, session)
        assert (reused, served) == (False, new_serial)
    # New sessions resume again, under the new keys.
    assert visit(gateway, context, session_after)[1]
    # The new key is in the HSM, on the same token, under a label of its own.
    entry = yaml.safe_load(gateway.config_file.read_text())["listeners"][0]["tls"]
    new_key = entry["certificates"][0]["key"]
    assert new_key.startswith("pkcs11:token=ops;object=incident-api-incident-")
    assert token.attributes(listener["new_key"].split("object=")[1].split("?")[0])["SENSITIVE"]
    # The advisory names the listener, its host name, the new fingerprint and the scan.
    advisory = Path(state["advisory"]).read_text()
    assert REASON in advisory and "| public | api.test |" in advisory
    assert listener["fingerprint"] in advisory and "served now" in advisory
    assert "upstream backend" in advisory
    report = json.loads(Path(state["scan_report"]).read_text())
    assert [t["source"] for t in report["targets"]] == ["upstream backend"]
    # The state file: private; `status` shows it done.
    assert (
        stat.S_IMODE(gateway.config_file.with_name("outwork.incident.json").stat().st_mode) == 0o600
    )
    shown = outwork("incident", "status", "-c", str(gateway.config_file), cwd=tmp_path, env=env)
    assert shown.returncode == 0 and "9 of 9 steps done" in shown.stdout
    # The changes went through the admin API: audited; ticket keys dropped by both workers.
    assert [a["detail"]["what"] for a in audit_lines(tmp_path)] == [
        "POST /certificates",
        "POST /tickets/rotate",
    ]
    assert "ticket keys rotated" in gateway.stderr()
    # A second start while this one is open is refused with one line, exit 1.
    again = outwork("incident", "start", "-c", str(gateway.config_file), "--reason", "again",
                    "--ca", "ca", cwd=tmp_path, env=env)  # fmt: skip
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert "is open" in again.stderr and again.stdout == ""

    # A restart keeps everything: the new certificate, the old session refused, the state.
    gateway.stop()
    restarted = make_gateway(gateway.config_file.read_text(), env=env)
    _, reused, served = visit(restarted, context, session)
    assert (reused, served) == (False, new_serial)
    assert state_of(gateway.config_file) == state


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    cert, key = issue_file_cert(tmp_path, "old")
    config = tmp_path / "outwork.yaml"
    config.write_text(_offline_config(tmp_path, cert, key))
    before = _snapshot(tmp_path)
    result = outwork("incident", "start", "-c", str(config), "--reason", REASON, "--ca", "ca",
                     "--dry-run", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing changed" in result.stdout
    for step in ("public: new ec-p256 key", "CSR", "certificate", "install", "session tickets",
                 "credentials", "SIGHUP", "scan", "advisory"):  # fmt: skip
        assert step in result.stdout, step
    assert "internal: CSR" in result.stdout and ".csr for" in result.stdout
    assert "-2.csr" in result.stdout  # not the file of the first listener's CSR
    assert _snapshot(tmp_path) == before


def _offline_config(tmp_path: Path, cert: Path, key: Path) -> str:
    config = gateway_config(
        "http://127.0.0.1:9",
        listeners=[
            {
                "name": "public",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]},
            },
            {"name": "plain", "bind": "127.0.0.1:0"},
            {
                "name": "internal",  # the same certificate: the same new key, its own CSR
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]},
            },
        ],
    )
    return yaml.safe_dump(config)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_bad_input_is_refused_with_one_line_and_changes_nothing(tmp_path: Path) -> None:
    cert, key = issue_file_cert(tmp_path, "old")
    config = tmp_path / "outwork.yaml"
    config.write_text(_offline_config(tmp_path, cert, key))
    before = _snapshot(tmp_path)
    cases = {
        "no such listener": ["--listener", "nope"],
        "has no TLS": ["--listener", "plain"],
        "not an RFC 3339 time": ["--at", "yesterday"],
        "in the future": ["--at", "2999-01-01T00:00:00Z"],
        "no internal CA": ["--ca", "missing-ca"],
    }
    for expected, args in cases.items():
        result = outwork("incident", "start", "-c", str(config), "--reason", REASON, *args,
                         cwd=tmp_path)  # fmt: skip
        assert expected in refused(result), expected
        assert _snapshot(tmp_path) == before, expected


def test_without_a_ca_the_install_waits_for_incident_install(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    cert, key = issue_file_cert(tmp_path, "old")
    gateway = make_gateway(config_text(make_backend(), tmp_path, cert, str(key)), env=TOKEN_ENV)
    config = str(gateway.config_file)
    admin = admin_address(gateway)
    result = outwork("incident", "start", "-c", config, "--reason", REASON, "--admin", admin,
                     cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    state = state_of(gateway.config_file)
    assert statuses(state) == {
        "key:public": "done",
        "csr:public": "done",
        "install:public": "waiting",
        "tickets": "done",
        "revocation": "done",
        "reload": "done",
        "scan": "done",
        "advisory": "done",
    }
    shown = outwork("incident", "status", "-c", config, cwd=tmp_path)
    assert "waiting" in shown.stdout and "incident install" in shown.stdout
    listener = state["certificates"][0]
    new_key = Path(listener["new_key"])
    assert new_key.parent == key.parent and stat.S_IMODE(new_key.stat().st_mode) == 0o600
    assert "pending" in Path(state["advisory"]).read_text()
    context = client(tmp_path)
    assert visit(gateway, context)[2] == serial_of(cert)  # still the old certificate

    # A certificate for another key is refused, and changes nothing.
    line = refused(outwork("incident", "install", "-c", config, str(cert), "--admin", admin,
                           cwd=tmp_path, env=TOKEN_ENV))  # fmt: skip
    assert "not for any new key" in line
    # The CA's answer to the incident's CSR goes in.
    run_ok("ca", "issue", "ca", "--csr", listener["csr"], "--out", "issued.pem", cwd=tmp_path)
    result = outwork("incident", "install", "-c", config, "issued.pem", "--admin", admin,
                     cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert visit(gateway, context)[2] == serial_of(tmp_path / "issued.pem")
    state = state_of(gateway.config_file)
    assert set(statuses(state).values()) == {"done"}
    assert "served now" in Path(state["advisory"]).read_text()
    # The revocation is in the config, the rest of it as it was.
    text = gateway.config_file.read_text()
    assert text.startswith("# the operator's config: comments stay\n")
    assert yaml.safe_load(text)["revocation"] == {"not_before": state["at"]}

    # Closed, it makes room for the next incident; its state is kept aside.
    closed = outwork("incident", "close", "-c", config, cwd=tmp_path)
    assert closed.returncode == 0 and "closed" in closed.stdout
    assert state_of(gateway.config_file)["status"] == "closed"
    assert outwork("incident", "close", "-c", config, cwd=tmp_path).returncode == 1
    result = outwork("incident", "start", "-c", config, "--reason", "the next one", "--ca", "ca",
                     "--admin", admin, cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    archived = json.loads((tmp_path / f"outwork.incident.{state['id']}.json").read_text())
    assert archived["reason"] == REASON and archived["status"] == "closed"
    assert state_of(gateway.config_file)["reason"] == "the next one"


def test_a_failed_step_is_recorded_and_resume_goes_on_from_it(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    # An encrypted key file: the new key gets the same passphrase, the entry keeps it.
    env = {**TOKEN_ENV, "KEY_PASSPHRASE": "a passphrase for the key file"}
    run_ok("ca", "init", "ca", cwd=tmp_path)
    run_ok("keys", "generate", "--type", "rsa-2048", "--out", "old.key", "--passphrase",
           "env:KEY_PASSPHRASE", cwd=tmp_path, env=env)  # fmt: skip
    run_ok("certs", "csr", "--key", "old.key", "--passphrase", "env:KEY_PASSPHRASE", "--name",
           "api.test", "--out", "old.csr", cwd=tmp_path, env=env)  # fmt: skip
    run_ok("ca", "issue", "ca", "--csr", "old.csr", "--out", "old.pem", cwd=tmp_path)
    text = config_text(make_backend(), tmp_path, tmp_path / "old.pem", str(tmp_path / "old.key"),
                       passphrase="env:KEY_PASSPHRASE")  # fmt: skip
    gateway = make_gateway(text, env=env)
    config = str(gateway.config_file)
    before = gateway.config_file.read_bytes()
    result = outwork("incident", "start", "-c", config, "--reason", REASON, "--ca", "ca",
                     "--admin", "127.0.0.1:1", cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "install:public failed" in lines[0] and "resume" in lines[0]
    assert statuses(state_of(gateway.config_file)) == {
        "key:public": "done",
        "csr:public": "done",
        "cert:public": "done",
        "install:public": "failed",
        "tickets": "pending",
        "revocation": "pending",
        "reload": "pending",
        "scan": "pending",
        "advisory": "pending",
    }
    assert gateway.config_file.read_bytes() == before
    shown = outwork("incident", "status", "-c", config, cwd=tmp_path)
    assert "failed" in shown.stdout and "unreachable" in shown.stdout
    key_file = Path(state_of(gateway.config_file)["certificates"][0]["new_key"])
    made = key_file.read_bytes()
    assert made.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    resumed = outwork("incident", "resume", "-c", config, "--admin", admin_address(gateway),
                      cwd=tmp_path, env=env)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = state_of(gateway.config_file)
    assert set(statuses(state).values()) == {"done"}
    assert key_file.read_bytes() == made  # the key made before the failure is the one used
    assert visit(gateway, client(tmp_path))[2] == serial_of(Path(state["certificates"][0]["cert"]))
    entry = yaml.safe_load(gateway.config_file.read_text())["listeners"][0]["tls"]
    assert entry["certificates"][0] == {
        "cert": state["certificates"][0]["cert"],
        "key": str(key_file),
        "passphrase": "env:KEY_PASSPHRASE",
    }


def rotate(gateway: Gateway, token: str | None) -> tuple[int, str]:
    assert gateway.admin_url is not None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        gateway.admin_url + "/tickets/rotate", data=b"{}", headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ticket_rotation_through_the_admin_api_needs_the_token_and_is_audited(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    cert, key = issue_file_cert(tmp_path, "old")
    gateway = make_gateway(config_text(make_backend(), tmp_path, cert, str(key)), env=TOKEN_ENV)
    context = client(tmp_path)
    session = visit(gateway, context)[0]
    assert rotate(gateway, None)[0] == 401
    assert rotate(gateway, "a-wrong-token-but-long-enough")[0] == 401
    assert visit(gateway, context, session)[1]  # refused requests changed nothing
    status, body = rotate(gateway, TOKEN_ENV["OUTWORK_ADMIN_TOKEN"])
    assert status == 200 and json.loads(body)["listeners"] == ["public"]
    assert not visit(gateway, context, session)[1]
    audit = audit_lines(tmp_path)
    assert [(a["detail"]["what"], a["detail"]["result"]) for a in audit] == [
        ("POST /tickets/rotate", "unauthorized"),
        ("POST /tickets/rotate", "unauthorized"),
        ("POST /tickets/rotate", "ok"),
    ]


# ----- credentials (the authenticate step of the `auth` branch, through the request pipeline)

API_KEY_BEFORE, API_KEY_AFTER = "key-issued-before-the-incident", "key-issued-after-it"
PASSWORD = "correct horse battery staple"
ISSUER = "https://idp.test/"


def ask(gateway: Gateway, context: ssl.SSLContext, path: str, *headers: str) -> int:
    """The status of one HTTPS request to the gateway with these header lines."""
    port = urlsplit(gateway.urls["public"]).port
    head = "".join(f"{h}\r\n" for h in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: api.test\r\n{head}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="api.test") as tls:
            tls.sendall(request.encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_credentials_issued_before_the_incident_are_refused_new_ones_accepted(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
) -> None:
    incident = int(time.time()) - 600  # --at: ten minutes ago

    def stamp(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def token(iat: int) -> str:
        claims = {"sub": "alice", "iss": ISSUER, "aud": "api", "iat": iat,
                  "exp": int(time.time()) + 300}  # fmt: skip
        signed: str = jwt.encode(claims, KEYS["ES256"], algorithm="ES256", headers={"kid": "es"})
        return f"Authorization: Bearer {signed}"

    def digest(key: str) -> str:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    cert, key = issue_file_cert(tmp_path, "old")
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with serve_jwks(make_pki(tmp_path / "idp")) as idp:
        idp.keys = [jwk_of(KEYS["ES256"], "es")]
        keys = [
            {"id": "before", "hash": digest(API_KEY_BEFORE), "created": stamp(incident - 60)},
            {"id": "after", "hash": digest(API_KEY_AFTER), "created": stamp(incident + 60)},
        ]
        jwks = {"jwks_url": idp.url, "ca": str(idp.ca), "issuer": ISSUER, "audience": "api",
                "algorithms": ["ES256"]}  # fmt: skip
        policies = {
            "keyed": {"authenticate": [{"api_key": {"header": "X-API-Key", "keys": keys}}]},
            "tokens": {"authenticate": [{"jwt": jwks}]},
            "people": {
                "authenticate": [
                    {"basic": {"users": [{"name": "ops", "hash": hasher.hash(PASSWORD)}]}}
                ]
            },
        }
        routes = [
            {"match": {"path_prefix": f"/{name}"}, "upstream": "backend", "policies": [name]}
            for name in policies
        ]
        text = config_text(make_backend(), tmp_path, cert, str(key), routes=routes,
                           policies=policies)  # fmt: skip
        gateway = make_gateway(text, env=TOKEN_ENV)
        context = client(tmp_path)
        basic = "Authorization: Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
        before = {
            "old key": ("/keyed", f"X-API-Key: {API_KEY_BEFORE}"),
            "new key": ("/keyed", f"X-API-Key: {API_KEY_AFTER}"),
            "old token": ("/tokens", token(incident - 300)),
            "new token": ("/tokens", token(int(time.time()))),
            "password": ("/people", basic),
        }
        assert {name: ask(gateway, context, *call) for name, call in before.items()} == {
            name: 200 for name in before
        }

        result = outwork("incident", "start", "-c", str(gateway.config_file), "--reason", REASON,
                         "--ca", "ca", "--at", stamp(incident), "--admin",
                         admin_address(gateway), cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        deadline = time.monotonic() + 30
        while ask(gateway, context, *before["old key"]) == 200:  # until the reload serves
            assert time.monotonic() < deadline, gateway.stderr()
            time.sleep(0.1)
        after = {name: ask(gateway, context, *call) for name, call in before.items()}
        assert after == {
            "old key": 401,
            "new key": 200,
            "old token": 401,
            "new token": 200,
            "password": 401,
        }
    written = yaml.safe_load(gateway.config_file.read_text())
    assert written["revocation"] == {"not_before": stamp(incident)}
    listed = written["policies"]["keyed"]["authenticate"][0]["api_key"]["keys"]
    assert [k.get("revoked", False) for k in listed] == [True, False]
    users = written["policies"]["people"]["authenticate"][0]["basic"]["users"]
    assert users[0]["must_change_password"] is True
    advisory = Path(state_of(gateway.config_file)["advisory"]).read_text()
    assert "revoked: `before`" in advisory and "`ops`" in advisory
