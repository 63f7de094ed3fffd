"""The `outwork` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def outwork(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outwork", *args], capture_output=True, text=True, timeout=30
    )


def test_check_prints_ok_for_the_demo_config() -> None:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert")], check=True)
    result = outwork("check", "-c", str(ROOT / "demo" / "outwork.yaml"))
    assert (result.returncode, result.stdout) == (0, "ok\n")


def test_check_reports_problems_with_line_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "listeners:\n  - name: public\n    bind: nowhere\nroutes: []\nupstreams: {}\ncolour: blue\n"
    )
    result = outwork("check", "-c", str(config))
    assert result.returncode == 1
    # Every problem at once, structural (the unknown key) or not (the address), in file order.
    assert result.stderr == (
        f"{config}:3: listeners[0].bind: expected host:port\n{config}:6: colour: unknown key\n"
    )


def test_check_reports_semantic_problems(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "listeners:\n  - name: public\n    bind: nowhere\nroutes: []\nupstreams: {}\n"
    )
    result = outwork("check", "-c", str(config))
    assert result.returncode == 1
    assert result.stderr == f"{config}:3: listeners[0].bind: expected host:port\n"


def test_check_missing_file(tmp_path: Path) -> None:
    result = outwork("check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("listeners: [\n")
    result = outwork("serve", "-c", str(config))
    assert result.returncode == 1
    assert "YAML syntax error" in result.stderr
    assert "Traceback" not in result.stderr
