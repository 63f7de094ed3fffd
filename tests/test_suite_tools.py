"""The suite's own rules for the programs it runs: each is named with the Debian package that
`make test` installs, a missing one skips on a developer's machine but fails under CI
(`CI=true`), and no test looks a program up by itself (a lookup of its own could skip, or
fail, without naming the install step).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT, TOOL_PACKAGES, require_file, require_tool

# Files allowed to call shutil.which: the helper itself; sslyze's lookup (it comes from
# .venv-tools, not Debian; it ends in `missing` too); `outwork` itself (not a tool: a missing
# one is a broken install, a failure everywhere); a script the tests run in a child process.
WHICH_ALLOWED = {
    "tests/conftest.py": "require_tool",
    "tests/e2e/conftest.py": "sslyze_path: .venv-tools or $PATH, then `missing`",
    "tests/e2e/servers.py": "find_outwork: the program under test",
    "tests/e2e/hsm_token.py": "a script run in a child process, after require_tool",
}


def debian_packages() -> set[str]:
    lines = (ROOT / "scripts" / "debian-packages.txt").read_text().splitlines()
    return {line.split("#")[0].strip() for line in lines} - {""}


def test_every_tool_comes_from_a_listed_debian_package() -> None:
    missing = {tool: pkg for tool, pkg in TOOL_PACKAGES.items() if pkg not in debian_packages()}
    assert not missing, f"not in scripts/debian-packages.txt: {missing}"


def test_a_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Debian package nmap"):
        require_tool("nmap")
    with pytest.raises(pytest.skip.Exception, match="Debian package testssl.sh"):
        require_tool("testssl", "testssl.sh")


def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_tool("nmap")
    with pytest.raises(pytest.fail.Exception, match="Debian package softhsm2"):
        require_file(tmp_path / "libsofthsm2.so", "softhsm2")


def test_a_present_tool_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    program = tmp_path / "nmap"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    assert require_tool("nmap") == str(program)
    assert require_file(program, "nmap") == program


def test_an_unlisted_tool_is_refused() -> None:
    with pytest.raises(ValueError, match="TOOL_PACKAGES"):
        require_tool("not-a-listed-tool")


def test_no_test_looks_up_a_program_itself() -> None:
    """shutil.which outside the helper would bring back skips (or failures) that name no
    install step and ignore CI=true."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), name)):
            if not isinstance(node, ast.Call) or name in WHICH_ALLOWED:
                continue
            if isinstance(node.func, ast.Attribute) and node.func.attr == "which":
                found.append(f"{name}:{node.lineno}")
    assert not found, f"use tests.conftest.require_tool: {found}"
