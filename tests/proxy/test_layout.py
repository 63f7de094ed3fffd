"""The gateway's structure (issue 9): the client side (`front/`), the exchange (`proxy/`), the
backend side (`upstream/`) and what observes them (`observe/`) import each other without a
cycle at run time, and an exchange's client side is one declared interface, so HTTP/2 does not
reach into the HTTP/1.1 connection."""

from __future__ import annotations

import ast
from pathlib import Path

OUTWORK = Path(__file__).resolve().parents[2] / "outwork"
# The packages whose modules run the proxy: checked together, since a cycle can cross them.
PACKAGES = ("front", "proxy", "upstream", "observe", "filters", "config")


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for n in ast.walk(node)}
    return inside


def module_file(module: str) -> Path:
    """`front.h1` -> outwork/front/h1.py."""
    return OUTWORK.joinpath(*module.split(".")).with_suffix(".py")


def imports(module: str, *, runtime_only: bool) -> set[str]:
    """The modules of PACKAGES that `module` (e.g. "front.h1") imports, at any depth of its
    code, as "package.module"."""
    tree = ast.parse(module_file(module).read_text())
    skip = _type_checking_nodes(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.removeprefix("outwork.") in PACKAGES:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            short = name.removeprefix("outwork.")
            if name.startswith("outwork.") and module_file(short).is_file():
                found.add(short)
    return found - {module}


def all_modules() -> list[str]:
    return sorted(
        f"{package}.{path.stem}"
        for package in PACKAGES
        for path in (OUTWORK / package).glob("*.py")
        if path.stem != "__init__"
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_layout_is_the_documented_one() -> None:
    for module in ("front.h1", "front.h2", "proxy.pipeline", "proxy.exchange", "upstream.pool"):
        assert module_file(module).is_file(), module
    for module in ("upstream.balancer", "upstream.health", "upstream.tls"):
        assert module_file(module).is_file(), module
    for module in ("observe.metrics", "observe.refusals", "observe.access_log"):
        assert module_file(module).is_file(), module
    assert module_file("config.load").is_file()
    assert not (OUTWORK / "policy").exists()


def test_no_import_cycle_at_run_time() -> None:
    graph = {module: imports(module, runtime_only=True) for module in all_modules()}
    assert cycles(graph) == []


def test_cycles_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_sees_both_import_forms() -> None:
    assert "front.h2" in imports("front.h1", runtime_only=True)  # from outwork.front.h2 import
    assert "proxy.pipeline" in imports("front.h1", runtime_only=True)  # from outwork.proxy import


def test_http2_and_the_exchange_know_the_client_side_only_by_its_interface() -> None:
    # Not even for type checking: the HTTP/1.1 connection is one implementation of it.
    for module in (
        "front.h2",
        "proxy.exchange",
        "upstream.pool",
        "upstream.balancer",
        "proxy.local_reply",
        "proxy.pipeline",
    ):
        assert "front.h1" not in imports(module, runtime_only=False), module
    assert "proxy.downstream" in imports("proxy.exchange", runtime_only=False)
    assert "front.h2" not in imports("proxy.pipeline", runtime_only=False)  # one pipeline


def test_http2_reads_no_private_attribute_of_its_connection() -> None:
    tree = ast.parse(module_file("front.h2").read_text())
    private = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and (
            (isinstance(node.value, ast.Name) and node.value.id == "client")
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "client")
        )
    ]
    assert private == []
