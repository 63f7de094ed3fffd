"""The suite's own rules. The programs it runs: each is named with the Debian package that
`make test` installs, a missing one skips on a developer's machine but fails under CI
(`CI=true`), and no test looks a program up by itself (a lookup of its own could skip, or
fail, without naming the install step). And every test checks something: a test that only
prints a report passes whatever the report says.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
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


# What counts as a check in a test's body (nested functions included): an assert; a `try`
# whose handlers define the exceptions allowed (the rest fail the test); pytest.raises, fail,
# warns, xfail; a call to a helper named assert*/expect*/check* (also with a leading `_`);
# a fuzz harness's TestOneInput (it asserts its invariants); or a call to a function of the
# same module that does one of these.
CHECK_CALLS = {"raises", "fail", "warns", "xfail", "TestOneInput"}
CHECK_PREFIXES = ("assert", "_assert", "expect", "_expect", "check", "_check")
Function = ast.FunctionDef | ast.AsyncFunctionDef


def called_names(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Attribute):
                yield func.attr
            elif isinstance(func, ast.Name):
                yield func.id


def checks_by_itself(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Assert) or (isinstance(sub, ast.Try) and sub.handlers):
            return True
    return any(n in CHECK_CALLS or n.startswith(CHECK_PREFIXES) for n in called_names(node))


def unchecked_tests(source: str) -> list[str]:
    tree = ast.parse(source)
    functions: dict[str, Function] = {}
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        for member in members:
            if isinstance(member, Function):
                functions[member.name] = member
    checking = {name for name, f in functions.items() if checks_by_itself(f)}
    while True:  # helpers that call a checking helper check too
        more = {
            name
            for name, f in functions.items()
            if name not in checking and checking.intersection(called_names(f))
        }
        if not more:
            break
        checking |= more
    return [name for name in functions if name.startswith("test") and name not in checking]


def test_a_report_that_only_prints_is_found() -> None:
    source = """
def test_print_table():
    rows = RESULTS
    if not rows:
        return
    print(rows)

def _helper(x):
    assert x

def test_through_a_helper():
    _helper(1)

def test_allowed_errors():
    try:
        parse(b"")
    except ValueError:
        pass
"""
    assert unchecked_tests(source) == ["test_print_table"]


def test_every_test_checks_something() -> None:
    found = [
        f"{path.relative_to(ROOT).as_posix()}::{name}"
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
        for name in unchecked_tests(path.read_text())
    ]
    assert not found, f"tests that check nothing (assert what they report): {found}"
