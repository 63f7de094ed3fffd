"""The request path compiled with mypyc or run from its sources (outwork/native.py): a build
is what runs, OUTWORK_PURE=1 runs the sources, and a build older than one of its sources, or
missing a module, is not used at all (compiled modules call each other directly)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from outwork import native
from outwork.filters.api import CONTINUE, Filter, Resume, Verdict
from outwork.filters.auth_method import Failure, Method
from outwork.filters.auth_method_spec import MethodOptions
from outwork.filters.authenticate import AuthenticateFilter
from outwork.filters.runner import Chain
from tests.conftest import ROOT, missing

PROBE = "import outwork.front.h1 as h1, outwork.native as n; print(h1.__file__, n.COMPILED)"


def probe(env: dict[str, str]) -> tuple[str, str]:
    """What a new interpreter loads for front/h1.py, and whether it says it is compiled."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded, compiled = result.stdout.split()
    return loaded, compiled


def environment(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OUTWORK_PURE"}
    env.update(changes)
    return env


def test_outwork_pure_runs_the_sources() -> None:
    loaded, compiled = probe(environment(OUTWORK_PURE="1"))
    assert loaded == str(ROOT / "outwork" / "front" / "h1.py")
    assert compiled == "False"


def test_a_fresh_build_is_what_runs() -> None:
    if not native.extension(native.SHARED_LIBRARY).exists():
        missing("the mypyc build", "`make install` with gcc and python3-dev")
    if os.environ.get("OUTWORK_PURE"):
        pytest.skip("this run is the pure-Python one")
    loaded, compiled = probe(environment())
    assert loaded.endswith(native.extension("outwork.front.h1").name)
    assert compiled == "True"


def build(root: Path, modules: tuple[str, ...]) -> None:
    """Sources and (empty) extensions of `modules` under `root`, the extensions newer."""
    for module in modules:
        source = native.extension(module, root).with_suffix("").with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        os.utime(source, (1_000_000, 1_000_000))
    for module in (native.SHARED_LIBRARY, *modules):
        native.extension(module, root).write_bytes(b"")


MODULES = ("outwork.http.reader", "outwork.front.h1")


def test_nothing_built_runs_the_sources_quietly(tmp_path: Path) -> None:
    assert native.state(tmp_path / "outwork", MODULES, {}) == (False, "")


def test_a_fresh_build_is_used(tmp_path: Path) -> None:
    build(tmp_path / "outwork", MODULES)
    assert native.state(tmp_path / "outwork", MODULES, {}) == (True, "")
    assert native.state(tmp_path / "outwork", MODULES, {"OUTWORK_PURE": "0"}) == (True, "")


def test_outwork_pure_overrides_a_build(tmp_path: Path) -> None:
    build(tmp_path / "outwork", MODULES)
    assert native.state(tmp_path / "outwork", MODULES, {"OUTWORK_PURE": "1"}) == (
        False,
        "OUTWORK_PURE is set",
    )


def test_a_source_edited_since_the_build_disables_every_module(tmp_path: Path) -> None:
    build(tmp_path / "outwork", MODULES)
    (tmp_path / "outwork" / "front" / "h1.py").write_text("# edited")
    assert native.state(tmp_path / "outwork", MODULES, {}) == (
        False,
        "outwork/front/h1.py changed since the build",
    )


def test_a_missing_module_disables_every_module(tmp_path: Path) -> None:
    build(tmp_path / "outwork", MODULES)
    native.extension("outwork.front.h1", tmp_path / "outwork").unlink()
    compiled, reason = native.state(tmp_path / "outwork", MODULES, {})
    assert not compiled
    assert reason == f"{native.extension('outwork.front.h1').name} is missing"


def test_the_makefile_reads_every_compiled_module() -> None:
    """The Makefile rebuilds when one of these changes: it reads the list with sed, one quoted
    name a line."""
    text = (ROOT / "outwork" / "native.py").read_text()
    listed = tuple(re.findall(r'^    "(outwork\.[a-z0-9_.]*)",$', text, re.M))
    assert listed == native.MODULES
    for module in native.MODULES:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_no_compiled_module_defines_a_config_schema() -> None:
    """mypyc builds a msgspec Struct without its class keywords: `forbid_unknown_fields` would
    be lost, and a misspelt config key accepted. Schemas stay in interpreted modules."""
    for module in native.MODULES:
        loaded = importlib.import_module(module)
        for value in vars(loaded).values():
            if isinstance(value, type) and value.__module__ == loaded.__name__:
                assert not issubclass(value, msgspec.Struct), f"{module}: {value.__name__}"


def test_no_hot_module_searches_bytes_for_a_one_byte_bytes_needle() -> None:
    """`b";" in data` costs about 2,000 instructions in CPython 3.11 (the needle is first tried
    as an int and the TypeError formatted); the int from `outwork.http.ascii` is a memchr."""
    one_byte = re.compile(r"""\bb(["'])(?:\\x[0-9a-fA-F]{2}|\\.|[^"'\\])\1 (?:not )?in \w""")
    for module in native.MODULES:
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        for number, line in enumerate(source.splitlines(), 1):
            assert not one_byte.search(line), f"{module}:{number}: {line.strip()}"


def test_a_subclass_flag_reaches_the_compiled_code() -> None:
    """Compiled code reads a compiled class's class attribute from the class's own slot, so an
    interpreted subclass's `inspects_request_body = True` (or a method's `kind`) would go
    unseen: Filter's flags and Method's `kind` and `credential_headers` are properties, which
    a subclass's class attribute overrides wherever they are read."""

    class Inspecting(Filter):
        __slots__ = ()
        inspects_request_body = True
        inspects_response_body = True

        def on_response_body(self, ctx: Any, chunk: bytes, end: bool, resume: Resume) -> Verdict:
            return CONTINUE

    class Custom(Method):
        __slots__ = ()
        kind = "custom"
        credential_headers = frozenset({b"x-custom-credential"})

    inspecting = Inspecting()
    chain = Chain([inspecting])
    assert chain.inspects_request_body
    assert chain.response_body.filters == (inspecting,)
    method = Custom(MethodOptions())
    step = AuthenticateFilter((method,), frozenset({b"x-authenticated-identity"}))
    assert b"x-custom-credential" in step.removals[id(method)].names
    refusal = step.refuse(method, Failure("no"))
    assert refusal.detail["method"] == "custom"
