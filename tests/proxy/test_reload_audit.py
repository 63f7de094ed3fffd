"""A reload with a bad config changes nothing, a good one switches the policy; each writes its
audit line (hash before and after, what changed), and `outwork reload` reports the verdict."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from outwork.filters import REGISTRY
from outwork.filters.steps import __name__ as _steps  # noqa: F401  (the real steps registered)
from tests.conftest import ROOT, Backend, Gateway, gateway_config
from tests.ops.conftest import outwork as ops_outwork
from tests.ops.test_install import TOKEN_ENV, admin_address, issue_file_cert, start
from tests.proxy import test_listener_tls
from tests.proxy.test_listener_tls import Pki
from tests.proxy.test_log_sinks import fifo_reader, read_lines
from tests.proxy.test_reload import outwork
from tests.proxy.test_request_filters import PROTOCOLS, exchange

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

# The steps a gateway with the test's `probe` step preloaded knows: the real ones in chain order,
# then the probe (a step outside the chain order runs after them).
KNOWN_WITH_PROBE = ", ".join([*(name for name in REGISTRY if name != "probe"), "probe"])


def get(url: str) -> tuple[int, str | None, str | None]:
    """Status, X-Backend and X-Policy of `GET /` through the gateway."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("x-backend"), response.getheader("x-policy")
    finally:
        conn.close()


def audit_lines(sink: Path) -> list[dict[str, Any]]:
    if not sink.exists():
        return []
    lines = [json.loads(line) for line in sink.read_text().splitlines() if line]
    return [line for line in lines if line["event"].startswith("config.reload_")]


def wait_for_audit(sink: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while len(found := audit_lines(sink)) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def base_config(backend: Backend, sink: Path, workers: int) -> dict[str, Any]:
    return {
        **gateway_config(backend.url),
        "workers": workers,
        "logging": {"security_events": str(sink)},
        "policies": {"baseline": {"headers": {"add": {"X-Policy": "v1"}}}},
        "default_policies": ["baseline"],
    }


# A policy step with a rate, networks and a secret, in the gateway and in `outwork reload`.
PROBE = "tests.policy.probe_step"
PROBE_STEP = {"rate": "10/s", "allow": ["127.0.0.0/8"]}

# Every new kind of mistake, in one file; the policy it would switch to says v2.
BROKEN = {
    "trusted_proxies": ["10.0.0.1/8"],  # a bad CIDR
    "admin": {"bind": "127.0.0.1:0", "token": "env:OUTWORK_TEST_UNSET_TOKEN"},  # missing secret
    "policies": {
        "baseline": {
            "headers": {"add": {"X-Policy": "v2"}},
            "probe": {**PROBE_STEP, "rate": "10/fortnight"},  # a bad rate
        },
        "extra": {"header": {"remove": ["Server"]}},  # an unknown step
    },
    "heartbeet": True,  # an unknown key
}


def outwork_with_probe(*args: str) -> subprocess.CompletedProcess[str]:
    """`outwork` as the gateway runs it here: with the probe step registered."""
    code = f"import {PROBE} as m; m.register(); from outwork.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_a_refused_reload_changes_nothing_and_an_applied_one_switches_the_policy(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    monkeypatch.delenv("OUTWORK_TEST_UNSET_TOKEN", raising=False)
    a = make_backend("a")
    sink = tmp_path / "security.jsonl"
    config = base_config(a, sink, workers)
    config["policies"]["baseline"]["probe"] = PROBE_STEP
    gw = make_gateway(config, preload=PROBE)
    first = digest(gw.config_file)
    assert get(gw.url) == (200, "a", "v1")

    broken = {**config, **BROKEN}
    broken["routes"] = [{**config["routes"][0], "policies": ["partnrs"]}]  # an unknown policy
    gw.config_file.write_text(yaml.safe_dump(broken))
    second = digest(gw.config_file)
    # `outwork reload` checks first: every problem, and no signal.
    result = outwork_with_probe("reload", "-c", str(gw.config_file))
    assert result.returncode == 1
    assert "not reloaded: the config has errors" in result.stderr
    assert audit_lines(sink) == []
    # A SIGHUP anyway: refused, audited, and the running config keeps serving.
    gw.proc.send_signal(signal.SIGHUP)
    (refused,) = wait_for_audit(sink, 1)
    assert refused["event"] == "config.reload_refused"
    assert (refused["peer"], refused["listener"]) == ("-", "-")
    detail = refused["detail"]
    assert (detail["file"], detail["hash_before"], detail["hash_after"]) == (
        str(gw.config_file),
        first,
        second,
    )
    assert detail["reason"].startswith("the config has errors")
    # Six problems, in file order (keys sorted by yaml.safe_dump), the first five quoted.
    assert detail["problem_count"] == 6
    assert [p.split(": ", 1)[1] for p in detail["problems"]] == [
        "admin.token: env:OUTWORK_TEST_UNSET_TOKEN: the environment variable is not set",
        "heartbeet: unknown key",
        "policies.baseline.probe.rate: invalid rate '10/fortnight'"
        " (expected e.g. 10/s, 1000/m, 5/h, 100/10s)",
        f"policies.extra.header: unknown policy step 'header' (known: {KNOWN_WITH_PROBE});"
        ' did you mean "headers"?',
        "routes[0].policies[0]: unknown policy 'partnrs' (known: baseline, extra)",
    ]
    assert all(p.startswith(f"{gw.config_file}:") for p in detail["problems"])
    assert "trusted_proxies[0]: not an IP address or CIDR" in gw.stderr()  # the sixth
    assert detail["changes"]["keys"] == {
        "added": ["heartbeet", "trusted_proxies"],
        "removed": [],
        "changed": ["admin", "policies", "routes"],
    }
    assert detail["changes"]["policies"] == {
        "added": ["extra"],
        "removed": [],
        "changed": ["baseline"],
    }
    for _ in range(3):
        assert get(gw.url) == (200, "a", "v1")
    assert gw.proc.poll() is None

    # A good config: `outwork reload` reads the gateway's verdict from its audit line.
    b = make_backend("b")
    good = base_config(b, sink, workers)
    good["policies"] = {
        "baseline": {"headers": {"add": {"X-Policy": "v2"}}, "probe": PROBE_STEP},
        "extra": {"headers": {"remove": ["Server"]}},
    }
    good["routes"] = [
        *good["routes"],
        {"name": "second", "match": {"path_prefix": "/second"}, "upstream": "backend"},
    ]
    gw.config_file.write_text(yaml.safe_dump(good))
    third = digest(gw.config_file)
    result = outwork_with_probe("reload", "-c", str(gw.config_file))
    assert result.returncode == 0, result.stderr
    assert f"reload applied: {third}" in result.stdout
    refused_again, applied = wait_for_audit(sink, 2)
    assert refused_again == refused
    assert applied["event"] == "config.reload_applied"
    detail = applied["detail"]
    assert (detail["hash_before"], detail["hash_after"]) == (first, third)
    assert "problems" not in detail and "reason" not in detail
    assert detail["changes"] == {
        "keys": {"added": [], "removed": [], "changed": ["policies", "routes", "upstreams"]},
        "policies": {"added": ["extra"], "removed": [], "changed": ["baseline"]},
        "routes": {"added": ["second"], "removed": [], "changed": []},
    }
    deadline = time.monotonic() + 15
    while get(gw.url) != (200, "b", "v2"):
        assert time.monotonic() < deadline, gw.stderr()
        time.sleep(0.05)
    assert gw.stop() == 0


def test_outwork_reload_reports_a_refusal_only_the_gateway_can_see(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """A file `check` accepts, with a listener on a port already taken: the gateway refuses
    the reload, and `outwork reload` says so from its audit line (exit 1)."""
    a = make_backend("a")
    sink = tmp_path / "security.jsonl"
    config = base_config(a, sink, 1)
    gw = make_gateway(config)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        clash = {
            **config,
            "listeners": [*config["listeners"], {"name": "clash", "bind": f"127.0.0.1:{port}"}],
        }
        gw.config_file.write_text(yaml.safe_dump(clash))
        result = outwork("reload", "-c", str(gw.config_file))
    finally:
        taken.close()
    assert result.returncode == 1
    assert "reload requested" in result.stdout
    assert "reload refused: cannot listen" in result.stderr
    (refused,) = audit_lines(sink)
    assert refused["event"] == "config.reload_refused"
    assert refused["detail"]["hash_after"] == digest(gw.config_file)
    assert refused["detail"]["changes"]["keys"]["changed"] == ["listeners"]
    assert get(gw.url) == (200, "a", "v1")
    assert gw.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_after_a_certificate_install_a_reload_compares_with_the_installed_file(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    workers: int,
) -> None:
    """The admin API rewrote the file: the next reload's `hash_before` is that file's, and a
    reload of it changes nothing."""
    old_cert, old_key = issue_file_cert(tmp_path, "old")
    new_cert, new_key = issue_file_cert(tmp_path, "new")
    gw = start(make_gateway, make_backend(), tmp_path, old_cert, str(old_key), TOKEN_ENV, workers)
    result = ops_outwork("certs", "install", "-c", str(gw.config_file), "--listener", "public",
                         "--cert", str(new_cert), "--key", str(new_key),
                         "--admin", admin_address(gw), cwd=tmp_path, env=TOKEN_ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr
    installed = digest(gw.config_file)
    gw.proc.send_signal(signal.SIGHUP)
    (applied,) = wait_for_audit(tmp_path / "security.jsonl", 1)
    assert applied["event"] == "config.reload_applied"
    assert applied["detail"]["hash_before"] == applied["detail"]["hash_after"] == installed
    nothing: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    assert applied["detail"]["changes"] == {"keys": nothing, "policies": nothing, "routes": nothing}
    assert gw.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_outwork_reload_asks_the_admin_listener_for_the_verdict(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], workers: int
) -> None:
    """Security events on stderr (the default): the verdict comes from GET /reload."""
    a, b = make_backend("a"), make_backend("b")
    gw = make_gateway({**gateway_config(a.url), "workers": workers})
    assert gw.admin_url is not None
    admin = urlsplit(gw.admin_url).netloc
    good = {**gateway_config(b.url), "workers": workers}
    gw.config_file.write_text(yaml.safe_dump(good))
    applied = digest(gw.config_file)
    result = outwork("reload", "-c", str(gw.config_file), "--admin", admin)
    assert result.returncode == 0, result.stderr
    assert f"reload applied: {applied}" in result.stdout
    deadline = time.monotonic() + 15
    while get(gw.url)[1] != "b":
        assert time.monotonic() < deadline, gw.stderr()
        time.sleep(0.05)

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        listener = {"name": "clash", "bind": f"127.0.0.1:{taken.getsockname()[1]}"}
        gw.config_file.write_text(
            yaml.safe_dump({**good, "listeners": [*good["listeners"], listener]})
        )
        result = outwork("reload", "-c", str(gw.config_file), "--admin", admin)
    finally:
        taken.close()
    assert result.returncode == 1
    assert "reload refused: cannot listen" in result.stderr
    with urllib.request.urlopen(f"http://{admin}/reload", timeout=5) as answer:
        status = json.loads(answer.read())
    assert status["running"] == applied
    last = status["last"]
    assert (last["result"], last["hash_before"], last["hash_after"]) == (
        "refused",
        applied,
        digest(gw.config_file),
    )
    assert last["reason"].startswith("cannot listen")
    assert "problems" not in last  # not on the unauthenticated admin listener
    assert get(gw.url)[1] == "b"
    assert gw.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reload_switches_every_worker_to_the_new_request_policy_or_none(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
    workers: int,
) -> None:
    """A request-side step (the probe: 403 outside its networks) over HTTP/1.1 and HTTP/2:
    a refused reload (a bad CIDR) leaves it, an applied one replaces it in every worker."""
    backend = make_backend("a")
    sink = tmp_path / "security.jsonl"
    tls = {"certificates": [{"cert": str(pki.folder / "server.pem"),
                             "key": str(pki.folder / "server.key")}]}  # fmt: skip
    config = {
        **base_config(backend, sink, workers),
        "listeners": [
            {"name": "plain", "bind": "127.0.0.1:0"},
            {"name": "public", "bind": "127.0.0.1:0", "tls": tls},
        ],
        "policies": {"guard": {"probe": {"rate": "10/s", "allow": ["10.0.0.0/8"]}}},
        "default_policies": ["guard"],
    }
    gw = make_gateway(config, preload=PROBE)

    def statuses() -> set[tuple[str, int]]:
        # Several connections each: with workers: 2 both workers answer some of them.
        return {
            (protocol, exchange(gw, pki, protocol, "/").status)
            for protocol in PROTOCOLS
            for _ in range(6)
        }

    assert statuses() == {("http/1.1", 403), ("h2", 403)}
    probe = {"rate": "10/s", "allow": ["127.0.0.1/8"]}  # a bad CIDR
    broken = {**config, "policies": {"guard": {"probe": probe}}}
    gw.config_file.write_text(yaml.safe_dump(broken))
    gw.proc.send_signal(signal.SIGHUP)
    (refused,) = wait_for_audit(sink, 1)
    assert refused["event"] == "config.reload_refused"
    (problem,) = refused["detail"]["problems"]
    assert "policies.guard.probe.allow[0]: not an IP address or CIDR" in problem
    assert statuses() == {("http/1.1", 403), ("h2", 403)}

    probe = {"rate": "10/s", "allow": ["127.0.0.0/8"]}
    good = {**config, "policies": {"guard": {"probe": probe}}}
    gw.config_file.write_text(yaml.safe_dump(good))
    gw.proc.send_signal(signal.SIGHUP)
    _, applied = wait_for_audit(sink, 2)
    assert applied["event"] == "config.reload_applied"
    assert applied["detail"]["changes"]["policies"]["changed"] == ["guard"]
    deadline = time.monotonic() + 15
    while statuses() != {("http/1.1", 200), ("h2", 200)}:  # old workers drain
        assert time.monotonic() < deadline, gw.stderr()
        time.sleep(0.1)
    assert statuses() == {("http/1.1", 200), ("h2", 200)}
    assert gw.stop() == 0


def test_outwork_reload_leaves_an_audit_fifo_to_its_reader(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """No admin listener, and the audit goes to a FIFO: `outwork reload` signals and returns.
    It does not read the FIFO, whose lines belong to its reader."""
    sink = tmp_path / "security.fifo"
    os.mkfifo(sink)
    config = base_config(make_backend("a"), sink, 1)
    del config["admin"]
    gw = make_gateway(config)
    config["policies"]["baseline"]["headers"]["add"]["X-Policy"] = "v2"
    gw.config_file.write_text(yaml.safe_dump(config))
    result = outwork("reload", "-c", str(gw.config_file))
    assert result.returncode == 0 and "reload requested" in result.stdout, result.stderr
    with fifo_reader(sink) as fd:
        (line,) = read_lines(fd, 1)
    assert json.loads(line)["event"] == "config.reload_applied"
    assert get(gw.url) == (200, "a", "v2")
