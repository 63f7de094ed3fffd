"""Fixtures for the end-to-end suite: a test PKI, a real backend, and real TLS servers.

`gateway(cert=..., heartbeat=...)` starts `outwork serve -c` (or, with
OUTWORK_E2E_SERVER=nginx, nginx as a reference to prove the harness itself) in front of the
backend and hands back a `servers.Gateway`. Gateways are shared across the session per
(cert, heartbeat) unless `fresh=True`. After every test that used one, the gateway must
still be running and must not have written a traceback.

`backend` and `gateway` here override the function-scoped fixtures of the same names in
tests/conftest.py for the tests in this directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing

from . import servers
from .engine_peer import EngineClient
from .pki import KEY_KINDS, ClientPKI, TestPKI, make_client_pki, make_pki

SERVER_KIND = os.environ.get("OUTWORK_E2E_SERVER", "outwork")
if SERVER_KIND not in ("outwork", "nginx"):
    raise pytest.UsageError(f"OUTWORK_E2E_SERVER must be outwork or nginx, not {SERVER_KIND!r}")

GatewayFactory = Callable[..., servers.Gateway]


def sslyze_path() -> str:
    env = os.environ.get("OUTWORK_SSLYZE")
    for candidate in ([Path(env)] if env else []) + [servers.REPO / ".venv-tools/bin/sslyze"]:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("sslyze")
    if found:
        return found
    missing("sslyze", "`make tools` puts it in .venv-tools from requirements-tools.lock")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> ClientPKI:
    return make_client_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Backend]:
    body = f"outwork-e2e backend says hello {secrets.token_hex(8)}\n"
    b = servers.start_backend(tmp_path_factory.mktemp("backend"), body)
    yield b
    b.stop()


@pytest.fixture(scope="session")
def _gateway_pool(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPKI, backend: servers.Backend
) -> Iterator[Callable[[str, bool, bool], servers.Gateway]]:
    started: list[servers.Gateway] = []
    cache: dict[tuple[str, bool], servers.Gateway | Exception] = {}

    def get(cert: str, heartbeat: bool, fresh: bool) -> servers.Gateway:
        if cert not in KEY_KINDS:
            raise ValueError(f"cert must be one of {KEY_KINDS}")
        key = (cert, heartbeat)
        cached = cache.get(key)
        if not fresh and cached is not None:
            if isinstance(cached, Exception):
                pytest.fail(f"{SERVER_KIND} could not start (earlier attempt): {cached}")
            if cached.alive():
                return cached
        workdir = tmp_path_factory.mktemp(f"{SERVER_KIND}-{cert}-hb{int(heartbeat)}")
        try:
            if SERVER_KIND == "nginx":
                gw = servers.start_nginx(workdir, pki.leaves[cert], upstream_port=backend.port)
            else:
                gw = servers.start_outwork(workdir, pki.leaves[cert], backend.port, heartbeat)
        except servers.ServerStartError as exc:
            if not fresh:
                cache[key] = exc
            pytest.fail(f"{SERVER_KIND} could not start: {exc}")
        started.append(gw)
        if not fresh:
            cache[key] = gw
        return gw

    yield get
    for gw in started:
        gw.stop()


def _check_gateways(used: list[servers.Gateway]) -> None:
    problems = []
    for gw in used:
        if not gw.alive():
            problems.append(
                f"{gw.kind} on port {gw.port} died (status {gw.proc.returncode}):\n"
                f"{gw.stderr_since_mark()[-4000:]}"
            )
        elif "Traceback" in gw.stderr_since_mark():
            problems.append(
                f"{gw.kind} on port {gw.port} wrote a traceback:\n{gw.stderr_since_mark()[-4000:]}"
            )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def _tls_gateway_pool(
    tmp_path_factory: pytest.TempPathFactory, backend: servers.Backend
) -> Iterator[Callable[..., servers.Gateway]]:
    started: list[servers.Gateway] = []
    cache: dict[str, servers.Gateway | Exception] = {}

    def get(
        name: str,
        leaf: Any,
        tls: dict[str, Any],
        top: dict[str, Any] | None,
        env: dict[str, str] | None,
        fresh: bool,
    ) -> servers.Gateway:
        key = json.dumps([name, tls, top, env], sort_keys=True, default=str)
        cached = cache.get(key)
        if not fresh and cached is not None:
            if isinstance(cached, Exception):
                pytest.fail(f"outwork ({name}) could not start (earlier attempt): {cached}")
            if cached.alive():
                return cached
        workdir = tmp_path_factory.mktemp(f"outwork-{name}")
        try:
            gw = servers.start_outwork_tls(workdir, leaf, backend.port, tls, top=top, env=env)
        except servers.ServerStartError as exc:
            if not fresh:
                cache[key] = exc
            pytest.fail(f"outwork ({name}) could not start: {exc}")
        started.append(gw)
        if not fresh:
            cache[key] = gw
        return gw

    yield get
    for gw in started:
        gw.stop()


@pytest.fixture
def tls_gateway(
    _tls_gateway_pool: Callable[..., servers.Gateway],
) -> Iterator[GatewayFactory]:
    """`tls_gateway(name, leaf, tls={...}, top=None, env=None, fresh=False)`: outwork with the
    issue-3 listener keys as given, an access log and security events; shared across the
    session per (name, tls, top, env) unless `fresh`. outwork only: the nginx reference run
    skips the tests that use it (they test outwork's own config keys and logs)."""
    if SERVER_KIND != "outwork":
        pytest.skip("tests of outwork's issue-3 listener keys and logs")
    used: list[servers.Gateway] = []

    def factory(
        name: str,
        leaf: Any,
        tls: dict[str, Any],
        top: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        fresh: bool = False,
    ) -> servers.Gateway:
        gw = _tls_gateway_pool(name, leaf, tls, top, env, fresh)
        if gw not in used:
            gw.mark_stderr()
            used.append(gw)
        return gw

    yield factory
    _check_gateways(used)


@pytest.fixture
def gateway(
    _gateway_pool: Callable[[str, bool, bool], servers.Gateway],
) -> Iterator[GatewayFactory]:
    used: list[servers.Gateway] = []

    def factory(cert: str = "ecdsa-p256", heartbeat: bool = False, fresh: bool = False):
        gw = _gateway_pool(cert, heartbeat, fresh)
        if gw not in used:
            gw.mark_stderr()
            used.append(gw)
        return gw

    yield factory
    _check_gateways(used)


@pytest.fixture
def engine_client(pki) -> Iterator:
    clients: list[EngineClient] = []

    def make(gw: servers.Gateway, heartbeat: bool = False, **config: Any) -> EngineClient:
        c = EngineClient(gw.address, pki.ca_cert, heartbeat, **config)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
