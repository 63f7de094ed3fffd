"""Shared fixtures: a real demo backend and a real `outwork serve`, both on loopback.

    def test_x(make_backend, make_gateway):
        backend = make_backend()                      # demo/backend.py on a free port
        gw = make_gateway({"upstreams": {"b": {"targets": [backend.url]}}, ...})
        gw.urls["public"]                             # the listener's URL (bound to port 0)

Both are processes that each test starts and stops; no mocks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "demo" / "backend.py"


# The external programs the tests run, each with the Debian package (one of
# scripts/debian-packages.txt, which `make test` installs) that provides it. `require_tool`
# takes only these names, so a new tool cannot be used without naming its install step
# (tests/test_suite_tools.py checks the packages are on the list).
TOOL_PACKAGES = {
    "apache2": "apache2-bin",
    "chromium": "chromium",
    "curl": "curl",
    "gnutls-cli": "gnutls-bin",
    "gnutls-serv": "gnutls-bin",
    "h2load": "nghttp2-client",
    "nginx": "nginx-light",
    "nmap": "nmap",
    "openssl": "openssl",
    "redis-cli": "redis-tools",
    "redis-server": "redis-server",
    "slowhttptest": "slowhttptest",
    "softhsm2-util": "softhsm2",
    "testssl": "testssl.sh",
    "testssl.sh": "testssl.sh",
}
# Debian puts daemons (nginx) in sbin, which is not on every user's $PATH.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str, install: str) -> NoReturn:
    """Something a test needs is not installed: skip on a developer's machine, but fail under
    CI (`CI=true`), where a skip would hide a missing install step."""
    message = f"{what} is not installed: {install}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing tool fails the test)", pytrace=False)
    pytest.skip(message)


def require_tool(name: str, *alternatives: str) -> str:
    """Path of an external program (`name` or one of `alternatives`, e.g. testssl's two
    names), or `missing`."""
    for candidate in (name, *alternatives):
        if candidate not in TOOL_PACKAGES:
            raise ValueError(f"{candidate!r} is not in TOOL_PACKAGES (name its Debian package)")
        search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
        found = shutil.which(candidate, path=search)
        if found:
            return found
    missing(name, f"`make test` installs the Debian package {TOOL_PACKAGES[name]}")


def require_file(path: str | Path, package: str) -> Path:
    """A file a Debian package installs (e.g. the SoftHSM2 PKCS#11 module), or `missing`."""
    if not Path(path).is_file():
        missing(str(path), f"`make test` installs the Debian package {package}")
    return Path(path)


class Backend:
    def __init__(self, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BACKEND), "--port", "0", "--name", name],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        assert match, f"backend did not start: {line!r}"
        self.address = match.group(1)
        self.url = f"http://{self.address}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        # The pipe was read for the first line only; closed here, not left to the collector
        # (an unclosed-file ResourceWarning in whichever test happens to run then).
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Gateway:
    def __init__(
        self, config_file: Path, env: dict[str, str] | None = None, preload: str | None = None
    ) -> None:
        self.config_file = config_file
        self.log_file = config_file.with_suffix(".stderr")
        command = [sys.executable, "-m", "outwork"]
        env = {**os.environ, **(env or {})}
        if preload is not None:
            # A test module whose `register()` adds test-only filter types to the registry
            # before the config is read (e.g. tests/proxy/wire_filters.py).
            code = f"import {preload} as m; m.register(); from outwork.cli import main; main()"
            command = [sys.executable, "-c", code]
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.log_file, "w") as log:
            self.proc = subprocess.Popen(
                [*command, "serve", "-c", str(config_file)],
                stderr=log,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        self.urls: dict[str, str] = {}
        self.admin_url: str | None = None
        deadline = time.monotonic() + 15
        while True:
            text = self.stderr()
            if "outwork: ready" in text:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()  # one still starting would outlive the test, and load the machine
                raise AssertionError(f"gateway did not start:\n{self.stderr()}")
            time.sleep(0.02)
        for name, url in re.findall(r"outwork: listener (\S+) on (\S+)", text):
            self.urls[name] = url
        admin = re.search(r"outwork: admin on (\S+)", text)
        self.admin_url = admin.group(1) if admin else None

    @property
    def url(self) -> str:
        return next(iter(self.urls.values()))

    def stderr(self) -> str:
        return self.log_file.read_text()

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the admin /metrics page (0.0 when absent), e.g.
        `gw.metric("outwork_requests_total", route="api", status="200")`."""
        return metric_sample(self.scrape(), name, **labels)

    def scrape(self) -> str:
        assert self.admin_url is not None, "no admin listener in this config"
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=5) as resp:
            return resp.read().decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def metric_sample(text: str, name: str, **labels: str) -> float:
    """A sample's value in a Prometheus text page, parsed by prometheus_client (0.0: absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include `labels` (0.0: none)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def gateway_config(backend_url: str, **overrides: Any) -> dict[str, Any]:
    """A plain-HTTP gateway config in front of one backend; keys in `overrides` replace."""
    config: dict[str, Any] = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
        "upstreams": {"backend": {"targets": [backend_url]}},
        "admin": {"bind": "127.0.0.1:0"},
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_backend() -> Iterator[Callable[..., Backend]]:
    started: list[Backend] = []

    def make(name: str = "demo") -> Backend:
        backend = Backend(name)
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.stop()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(
        config: dict[str, Any] | str,
        name: str = "outwork.yaml",
        env: dict[str, str] | None = None,
        preload: str | None = None,
    ) -> Gateway:
        path = tmp_path / name
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        gateway = Gateway(path, env, preload)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def backend(make_backend: Callable[..., Backend]) -> Backend:
    return make_backend()


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway], backend: Backend) -> Gateway:
    return make_gateway(gateway_config(backend.url))
