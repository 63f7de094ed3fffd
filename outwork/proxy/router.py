"""Route matching, compiled once at config load: exact paths first, then the longest prefix."""

from __future__ import annotations

from outwork.policy.config import RouteConfig


class Router:
    def __init__(self, routes: tuple[RouteConfig, ...]) -> None:
        self._exact: dict[bytes, str] = {}
        prefixes: list[tuple[bytes, str]] = []
        for route in routes:
            if route.path is not None:
                self._exact.setdefault(route.path.encode(), route.upstream)
            elif route.path_prefix is not None:
                prefixes.append((route.path_prefix.encode(), route.upstream))
        # Longest first; for equal prefixes the first one in the file wins (stable sort).
        prefixes.sort(key=lambda p: -len(p[0]))
        self._prefixes = tuple(prefixes)

    def match(self, path: bytes) -> str | None:
        """The upstream name for a request path (without query), or None (404)."""
        upstream = self._exact.get(path)
        if upstream is not None:
            return upstream
        for prefix, name in self._prefixes:
            if path.startswith(prefix):
                return name
        return None
