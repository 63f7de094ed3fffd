"""Running the operator commands as an operator does (`python -m outwork ...`, a real process),
and a SoftHSM2 token of their own for the pkcs11: paths.

The token lives in a temporary folder named by SOFTHSM2_CONF in the environment of the child
processes only: this test process never loads the PKCS#11 module for it, so it cannot disturb (or
be disturbed by) the session-wide token of tests/keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_file, require_tool
from tests.keys.conftest import MODULE

PIN = "1234"
SO_PIN = "5678"


def outwork(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outwork", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def openssl(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("openssl"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """A refusal as the brief defines it: exit 2, nothing on stdout, one line on stderr."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@dataclass
class Token:
    folder: Path
    pin_file: Path
    label: str = "ops"

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.folder / "softhsm2.conf")}

    def uri(self, label: str, pin_source: Path | None = None, token: str | None = None) -> str:
        pin = pin_source or self.pin_file
        return f"pkcs11:token={token or self.label};object={label}?pin-source=file:{pin}"

    def attributes(self, label: str) -> dict[str, Any]:
        """The private key's attributes as the token reports them (python-pkcs11 in a child)."""
        script = f"""
import json, pkcs11
from pkcs11 import Attribute, ObjectClass
token = pkcs11.lib({MODULE!r}).get_token(token_label={self.label!r})
with token.open(user_pin={PIN!r}) as s:
    keys = list(s.get_objects({{Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                Attribute.LABEL: {label!r}}}))
    names = ["SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE",
             "PRIVATE", "TOKEN", "SIGN", "LOCAL"]
    print(json.dumps([{{n: bool(k[getattr(Attribute, n)]) for n in names}} for k in keys]))
"""
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
            check=True,
        )
        found: list[dict[str, Any]] = json.loads(result.stdout)
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    util = require_tool("softhsm2-util")
    require_file(MODULE, "softhsm2")
    folder = tmp_path_factory.mktemp("ops-hsm")
    (folder / "tokens").mkdir()
    (folder / "softhsm2.conf").write_text(
        f"directories.tokendir = {folder / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = folder / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    made = Token(folder, pin_file)
    subprocess.run(
        [util, "--init-token", "--free", "--label", made.label, "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
        env={**os.environ, **made.env},
    )
    return made
