"""The modules mypyc compiles (scripts/build-native, run by `make install`), and the choice at
import between them and the pure-Python sources.

With a C compiler and the Python headers, `make install` compiles the request path's modules
into C extensions beside their sources (about a third fewer instructions per keep-alive request);
without them the same sources run interpreted, as they do with OUTWORK_PURE=1 in the environment.
Compiled modules call each other directly in C, so it is all or none: when one is missing or
older than its source (edited since the last build), every module runs from its source.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import (
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    FileFinder,
    ModuleSpec,
    SourceFileLoader,
)
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # only mypyc reads the decorator; the sources run without it

        def mypyc_attr(*attrs, **kwattrs):
            return lambda cls: cls


__all__ = ["COMPILED", "MODULES", "REASON", "SHARED_LIBRARY", "mypyc_attr", "state"]

# The hot path of a keep-alive request, strictly typed. Not here: modules whose classes the
# interpreter subclasses (unless the class allows it) or tests patch, config schemas (msgspec
# Structs lose their class keywords: filters/*_spec.py), and the glue that meets asyncio's and
# uvloop's loosely typed objects (proxy/server.py: uvloop gives lists where typeshed says
# tuples, which compiled code checks).
MODULES = (
    "outwork.filters.access",
    "outwork.filters.api",
    "outwork.filters.auth_apikey",
    "outwork.filters.auth_method",
    "outwork.filters.authenticate",
    "outwork.filters.authorize",
    "outwork.filters.client_key",
    "outwork.filters.credentials",
    "outwork.filters.gcra",
    "outwork.filters.header_lines",
    "outwork.filters.headers",
    "outwork.filters.json_limits",
    "outwork.filters.json_whole",
    "outwork.filters.node_table",
    "outwork.filters.rate_limit",
    "outwork.filters.runner",
    "outwork.filters.steps",
    "outwork.filters.threat",
    "outwork.front.h1",
    "outwork.front.sealed",
    "outwork.http.ascii",
    "outwork.http.checks",
    "outwork.http.messages",
    "outwork.http.path",
    "outwork.http.reader",
    "outwork.http.serialize",
    "outwork.observe.access_log",
    "outwork.observe.line_sink",
    "outwork.observe.metrics",
    "outwork.proxy.clock",
    "outwork.proxy.draining",
    "outwork.proxy.exchange",
    "outwork.proxy.exchange_state",
    "outwork.proxy.forwarding",
    "outwork.proxy.local_reply",
    "outwork.proxy.pipeline",
    "outwork.proxy.router",
    "outwork.tls.alerts",
    "outwork.tls.base",
    "outwork.tls.certselect",
    "outwork.tls.clientauth",
    "outwork.tls.codec",
    "outwork.tls.enums",
    "outwork.tls.events",
    "outwork.tls.extensions",
    "outwork.tls.groups",
    "outwork.tls.ja4",
    "outwork.tls.keyschedule",
    "outwork.tls.messages",
    "outwork.tls.records",
    "outwork.tls.server",
    "outwork.tls.signing",
    "outwork.tls.tickets",
    "outwork.upstream.pool",
    "outwork.waf.engine",
    "outwork.waf.fastpath",
    "outwork.waf.operators",
    "outwork.waf.patterns",
    "outwork.waf.transforms",
    "outwork.waf.variables",
)
# mypyc's runtime and every compiled module's code, in one extension the modules' stubs load.
SHARED_LIBRARY = "outwork._native__mypyc"

PACKAGE_DIR = Path(__file__).resolve().parent


def extension(module: str, root: Path = PACKAGE_DIR) -> Path:
    """Where the compiled extension of `module` (a dotted name under outwork) sits."""
    *folders, name = module.split(".")[1:]
    return root.joinpath(*folders, name + EXTENSION_SUFFIXES[0])


def state(
    root: Path = PACKAGE_DIR,
    modules: Sequence[str] = MODULES,
    environ: dict[str, str] | os._Environ[str] = os.environ,
) -> tuple[bool, str]:
    """Whether the compiled modules run, and if not, why (empty when none is built)."""
    built = [m for m in (SHARED_LIBRARY, *modules) if extension(m, root).exists()]
    if not built:
        return False, ""
    if environ.get("OUTWORK_PURE", "") not in ("", "0"):
        return False, "OUTWORK_PURE is set"
    for module in (SHARED_LIBRARY, *modules):
        compiled = extension(module, root)
        if module not in built:
            return False, f"{compiled.name} is missing"
        if module == SHARED_LIBRARY:
            continue
        source = compiled.with_name(compiled.name.split(".")[0] + ".py")
        if source.stat().st_mtime > compiled.stat().st_mtime:
            return False, f"{source.relative_to(root.parent)} changed since the build"
    return True, ""


class SourceOnly(MetaPathFinder):
    """Finds outwork's modules as their .py sources, never the compiled extensions beside them."""

    def __init__(self) -> None:
        self._finders: dict[str, FileFinder] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith("outwork.") or path is None:
            return None
        for entry in path:
            finder = self._finders.get(entry)
            if finder is None:
                finder = self._finders[entry] = FileFinder(
                    entry, (SourceFileLoader, SOURCE_SUFFIXES)
                )
            spec = finder.find_spec(fullname)
            if spec is not None and spec.loader is not None:
                return spec
        return None


COMPILED, REASON = state()
if not COMPILED and REASON:  # built, but not to be used: keep the extensions from loading
    sys.meta_path.insert(0, SourceOnly())
    if REASON != "OUTWORK_PURE is set":
        warnings.warn(
            f"outwork: running the pure-Python modules ({REASON}; `make install` rebuilds)",
            RuntimeWarning,
            stacklevel=2,
        )
