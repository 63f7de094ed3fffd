"""The proxy's structure: an exchange's client side is one declared interface, so HTTP/2 does
not reach into the HTTP/1.1 connection, and `outwork/proxy` has no import cycle at run time."""

from __future__ import annotations

import ast
from pathlib import Path

PROXY = Path(__file__).resolve().parents[2] / "outwork" / "proxy"


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for n in ast.walk(node)}
    return inside


def imports(module: str, *, runtime_only: bool) -> set[str]:
    """The `outwork.proxy` modules `module` imports (at any depth of its code)."""
    tree = ast.parse((PROXY / f"{module}.py").read_text())
    skip = _type_checking_nodes(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "outwork.proxy":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("outwork.proxy."):
                found.add(node.module.removeprefix("outwork.proxy."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("outwork.proxy."):
                    found.add(alias.name.removeprefix("outwork.proxy."))
    return found - {module}


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


def test_proxy_has_no_import_cycle_at_run_time() -> None:
    modules = [path.stem for path in PROXY.glob("*.py") if path.stem != "__init__"]
    graph = {module: imports(module, runtime_only=True) for module in modules}
    assert cycles(graph) == []


def test_cycles_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_http2_and_the_exchange_know_the_client_side_only_by_its_interface() -> None:
    # Not even for type checking: the HTTP/1.1 connection is one implementation of it.
    for module in ("h2", "exchange", "upstream", "balancer", "local_reply", "pipeline"):
        assert "connection" not in imports(module, runtime_only=False), module
    assert "downstream" in imports("exchange", runtime_only=False)
    assert "h2" not in imports("pipeline", runtime_only=False)  # one pipeline for both


def test_http2_reads_no_private_attribute_of_its_connection() -> None:
    tree = ast.parse((PROXY / "h2.py").read_text())
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
