"""Fixtures for `outwork scan`: a test PKI, the servers it scans, and a runner for the command."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.pki import TestPKI, make_pki

from .servers import LeakyServer, OldServer, PythonTLSServer


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("scan-pki"))


@dataclass
class ScanRun:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    def target(self, address: str) -> dict[str, Any]:
        assert self.report is not None, self.stderr
        found = [t for t in self.report["targets"] if t["target"] == address]
        assert len(found) == 1, [t["target"] for t in self.report["targets"]]
        return found[0]


def run_scan(tmp_path: Path, *args: str, json_report: bool = True) -> ScanRun:
    report_path = tmp_path / "scan.json"
    report_path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "outwork", "scan", *args]
    if json_report:
        argv += ["--json", str(report_path)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return ScanRun(proc.returncode, proc.stdout, proc.stderr, report)


@pytest.fixture(scope="session")
def leaky_plaintext(pki: TestPKI) -> Iterator[LeakyServer]:
    leaf = pki.leaves["ecdsa-p256"]
    server = LeakyServer(leaf.cert, leaf.key, plaintext=True, in_session=False)
    yield server
    server.close()


@pytest.fixture(scope="session")
def leaky_in_session(pki: TestPKI) -> Iterator[LeakyServer]:
    leaf = pki.leaves["ecdsa-p256"]
    server = LeakyServer(leaf.cert, leaf.key, plaintext=False, in_session=True)
    yield server
    server.close()


@pytest.fixture(scope="session")
def python_tls(pki: TestPKI) -> Iterator[PythonTLSServer]:
    leaf = pki.leaves["ecdsa-p256"]
    server = PythonTLSServer(leaf.cert, leaf.key)
    yield server
    server.close()


@pytest.fixture(scope="session")
def old_server(pki: TestPKI) -> Iterator[OldServer]:
    server = OldServer(pki.leaves["rsa-2048"].cert)
    yield server
    server.close()
