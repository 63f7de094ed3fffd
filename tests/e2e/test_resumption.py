"""Session resumption through the running gateway (issue 3): `openssl s_client -sess_out` then
`-sess_in`, TLS 1.3 (PSK with psk_dhe_ke) and TLS 1.2 (RFC 5077 tickets); a ticket made by
another gateway process that shares `session_tickets.key_file` resumes there; a ticket whose
key has rotated out (`rotation: 2s`, two periods later) falls back to a full handshake.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool

from . import listeners
from .clients import ToolRun, get_close, new_tag, run_tool

VERSIONS = {"1.3": "-tls1_3", "1.2": "-tls1_2"}


def s_client(port: int, ca: Path, version: str, *extra: str) -> list[str]:
    openssl = require_tool("openssl")
    return [
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        VERSIONS[version], "-CAfile", str(ca), "-verify_return_error", "-ign_eof", *extra,
    ]  # fmt: skip


def connect(port: int, ca: Path, version: str, tag: str, *extra: str) -> ToolRun:
    return run_tool(s_client(port, ca, version, *extra), stdin=get_close(tag))


def first_session(gw, pki, backend, version: str, session: Path) -> ToolRun:
    tag = new_tag("first")
    run = connect(gw.port, pki.ca_cert, version, tag, "-sess_out", str(session))
    assert f"New, TLSv{version}, Cipher is" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert session.exists() and session.stat().st_size > 0, run.explain()
    hint = re.search(r"TLS session ticket lifetime hint: (\d+)", run.output)
    assert hint, f"no session ticket issued\n{run.explain()}"
    assert gw.access_for(tag)["tls"]["resumed"] is False
    return run


def assert_resumed(gw, run: ToolRun, version: str, tag: str, backend) -> None:
    assert f"Reused, TLSv{version}, Cipher is" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    entry = gw.access_for(tag)
    assert entry["tls"]["resumed"] is True and entry["tls"]["version"] == version, entry


@pytest.mark.parametrize("version", list(VERSIONS))
def test_resumes_with_ticket(tls_gateway, pki, backend, tmp_path, version):
    gw = tls_gateway("dual", pki.leaves["ecdsa-p256"], listeners.dual(pki))
    session = tmp_path / "session.pem"
    first_session(gw, pki, backend, version, session)
    tag = new_tag("resume")
    run = connect(gw.port, pki.ca_cert, version, tag, "-sess_in", str(session))
    assert_resumed(gw, run, version, tag, backend)
    if version == "1.2":
        # RFC 7627 5.3: the resumed session keeps extended master secret (carried in the ticket).
        assert "Extended master secret: yes" in run.output, run.explain()


@pytest.mark.parametrize("version", list(VERSIONS))
def test_ticket_from_another_process_with_same_key_file(
    tls_gateway, pki, backend, tmp_path_factory, version
):
    """Two gateway processes (as two workers of a node would be) read one key file: a ticket
    from the first resumes on the second."""
    key_file = tmp_path_factory.mktemp("ticket-keys") / "ticket-keys.json"
    tls = listeners.dual(pki, session_tickets={"key_file": str(key_file)})
    first = tls_gateway(f"shared-a-{version}", pki.leaves["ecdsa-p256"], tls)
    second = tls_gateway(f"shared-b-{version}", pki.leaves["ecdsa-p256"], tls, fresh=True)
    assert first.port != second.port and first.proc.pid != second.proc.pid
    session = tmp_path_factory.mktemp("sess") / "session.pem"
    first_session(first, pki, backend, version, session)
    assert key_file.exists(), "the gateway did not write its ticket key file"
    tag = new_tag("other-process")
    run = connect(second.port, pki.ca_cert, version, tag, "-sess_in", str(session))
    assert_resumed(second, run, version, tag, backend)


def test_ticket_from_process_with_own_keys_does_not_resume(tls_gateway, pki, backend, tmp_path):
    """The control for the test above: without a shared key file each process has its own
    keys, so the other process cannot open the ticket and does a full handshake."""
    first = tls_gateway("dual", pki.leaves["ecdsa-p256"], listeners.dual(pki))
    other = tls_gateway("dual-2", pki.leaves["ecdsa-p256"], listeners.dual(pki))
    session = tmp_path / "session.pem"
    first_session(first, pki, backend, "1.3", session)
    tag = new_tag("foreign")
    run = connect(other.port, pki.ca_cert, "1.3", tag, "-sess_in", str(session))
    assert "New, TLSv1.3" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert other.access_for(tag)["tls"]["resumed"] is False


ROTATION = 2.0


@pytest.mark.parametrize("version", list(VERSIONS))
def test_ticket_older_than_its_key_falls_back_to_full_handshake(
    tls_gateway, pki, backend, tmp_path_factory, version
):
    """`rotation: 2s`: a key encrypts for one period and is still accepted in the next; two
    periods after the ticket was made its key is gone. The ticket's own lifetime (1 h) has
    not run out, so the client still offers it: the server must refuse it and do a full
    handshake (and a fresh ticket still resumes, so rotation did not just break resumption)."""
    key_file = tmp_path_factory.mktemp("short-keys") / "ticket-keys.json"
    tls = listeners.dual(
        pki, session_tickets={"key_file": str(key_file), "rotation": "2s", "lifetime": "1h"}
    )
    gw = tls_gateway(f"short-rotation-{version}", pki.leaves["ecdsa-p256"], tls)
    folder = tmp_path_factory.mktemp("sess")
    old = folder / "old.pem"
    run = first_session(gw, pki, backend, version, old)
    issued = time.monotonic()
    found = re.search(r"TLS session ticket lifetime hint: (\d+)", run.output)
    hint = int(found.group(1)) if found else 0
    assert hint > 10, f"lifetime hint {hint}: the client might drop the ticket itself"
    time.sleep(max(0.0, 2 * ROTATION + 0.3 - (time.monotonic() - issued)))

    tag = new_tag("stale")
    run = connect(gw.port, pki.ca_cert, version, tag, "-sess_in", str(old))
    assert f"New, TLSv{version}" in run.output, run.explain()
    assert "Reused" not in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert gw.access_for(tag)["tls"]["resumed"] is False

    fresh = folder / "fresh.pem"
    first_session(gw, pki, backend, version, fresh)
    tag = new_tag("fresh")
    run = connect(gw.port, pki.ca_cert, version, tag, "-sess_in", str(fresh))
    assert_resumed(gw, run, version, tag, backend)


WORKER_TRIES = 12  # connections spread over 2 workers by SO_REUSEPORT: all on one is 2**-11


@pytest.mark.parametrize("shared", [True, False], ids=["shared-key-file", "per-worker-keys"])
def test_tickets_resume_on_any_worker_of_a_node(
    tls_gateway, pki, backend, tmp_path_factory, shared
):
    """`workers: 2`: the kernel spreads connections over both workers. With the node's key file
    every resumption succeeds, whichever worker issued the ticket; with per-worker keys (the
    control) the connections that land on the other worker fall back to full handshakes."""
    settings = {}
    if shared:
        key_file = tmp_path_factory.mktemp("ticket-keys") / "ticket-keys.json"
        settings = {"session_tickets": {"key_file": str(key_file)}}
    gw = tls_gateway(
        f"workers-{shared}",
        pki.leaves["ecdsa-p256"],
        listeners.dual(pki, **settings),
        top={"workers": 2},
        fresh=True,
    )
    session = tmp_path_factory.mktemp("sess") / "session.pem"
    first_session(gw, pki, backend, "1.3", session)
    reused = 0
    for _ in range(WORKER_TRIES):
        run = connect(gw.port, pki.ca_cert, "1.3", new_tag("worker"), "-sess_in", str(session))
        assert backend.body.decode() in run.output, run.explain()
        reused += "Reused, TLSv1.3" in run.output
    if shared:
        assert reused == WORKER_TRIES
    else:
        assert 0 < reused < WORKER_TRIES
