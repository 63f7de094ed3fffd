"""Route matching, compiled once at config load.

The most specific route wins, decided in this order:
1. host: an exact host, then a wildcard (`*.example.com`, the longest suffix first), then routes
   without a host;
2. path: an exact `path`, then the longest `path_prefix` (a route without a path comes last);
3. routes that list `methods` before those that do not;
4. the first in the file.
A `default: true` route catches what nothing else matches; without one the answer is 404, or 405
when some route serves the path with other methods.

Paths arrive normalised (outwork/http/path.py) and are compared without the `;` parameters of
their segments and, unless `paths.case_sensitive`, in lower case: the way the most lenient
backend reads them, so none can be reached through another route.

Compiled into dicts keyed by host and path, so a request costs a few dict lookups and a scan of
the prefixes of its host level, not a pass over every route.
"""

from __future__ import annotations

from outwork.config.config import RouteConfig
from outwork.http.ascii import SEMICOLON
from outwork.http.messages import RequestHead
from outwork.http.path import route_path

# One route at a path: the methods it takes (None: any) and the route.
_Candidate = tuple[frozenset[bytes] | None, RouteConfig]


def route_methods(route: RouteConfig) -> frozenset[bytes] | None:
    """The methods a route takes, as bytes. GET implies HEAD (RFC 9110 9.1)."""
    if route.methods is None:
        return None
    methods = {m.encode() for m in route.methods}
    if b"GET" in methods:
        methods.add(b"HEAD")
    return frozenset(methods)


def normalise_host(value: bytes) -> bytes:
    """A Host header value as routes compare it: lower case, without port or trailing dot."""
    host = value.strip(b" \t").lower()
    if host[:1] == b"[":
        end = host.find(b"]")
        if end > 0:
            host = host[: end + 1]
    else:
        colon = host.find(b":")
        if colon >= 0:
            host = host[:colon]
    if host[-1:] == b".":
        host = host[:-1]
    return host


def head_host(head: RequestHead) -> bytes:
    """A head's Host value, b"" without one."""
    scan = head.scan
    if scan is not None:
        return scan.host if head.has_host else b""
    for name, value in head.headers:
        if name.lower() == b"host":
            return value
    return b""


class _Table:
    """The routes of one host level, by path (lower case when matching folds case)."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, routes: list[RouteConfig], fold_case: bool) -> None:
        exact: dict[bytes, list[_Candidate]] = {}
        prefixes: dict[bytes, list[_Candidate]] = {}
        for route in routes:
            entry = (route_methods(route), route)
            if route.path is not None:
                key = route.path.lower() if fold_case else route.path
                exact.setdefault(key.encode(), []).append(entry)
            else:  # a route without a path is a prefix of every path
                prefix = route.path_prefix or ""
                prefix = prefix.lower() if fold_case else prefix
                prefixes.setdefault(prefix.encode(), []).append(entry)
        self.exact = {path: _ordered(c) for path, c in exact.items()}
        self.prefixes = tuple(
            (prefix, _ordered(c))
            for prefix, c in sorted(prefixes.items(), key=lambda p: -len(p[0]))
        )

    def match(self, method: bytes, path: bytes) -> RouteConfig | None:
        candidates = self.exact.get(path)
        if candidates is not None:
            for methods, route in candidates:
                if methods is None or method in methods:
                    return route
        for prefix, candidates in self.prefixes:
            if path.startswith(prefix):
                for methods, route in candidates:
                    if methods is None or method in methods:
                        return route
        return None

    def methods_for(self, path: bytes, into: set[bytes]) -> None:
        """Collect the methods of the routes that match this path (for a 405's Allow)."""
        for methods, _ in self.exact.get(path, ()):
            into.update(methods or ())
        for prefix, candidates in self.prefixes:
            if path.startswith(prefix):
                for methods, _ in candidates:
                    into.update(methods or ())


def _ordered(candidates: list[_Candidate]) -> tuple[_Candidate, ...]:
    """Routes that list methods first; file order otherwise (a stable sort)."""
    return tuple(sorted(candidates, key=lambda c: c[0] is None))


class Router:
    def __init__(self, routes: tuple[RouteConfig, ...], case_sensitive: bool = False) -> None:
        # Paths are matched in lower case unless case_sensitive: a backend that serves /ADMIN
        # as /admin (Express, IIS) must not get it through another route.
        self.fold_case = not case_sensitive
        exact: dict[bytes, list[RouteConfig]] = {}
        wildcard: dict[bytes, list[RouteConfig]] = {}
        anyhost: list[RouteConfig] = []
        self.default: RouteConfig | None = None
        for route in routes:
            if route.default:
                if self.default is None:
                    self.default = route
            elif route.host is None:
                anyhost.append(route)
            elif route.host.startswith("*."):
                wildcard.setdefault(route.host[1:].encode(), []).append(route)  # ".example.com"
            else:
                exact.setdefault(route.host.encode(), []).append(route)
        fold = self.fold_case
        self._exact = {host: _Table(r, fold) for host, r in exact.items()}
        self._wildcard = {suffix: _Table(r, fold) for suffix, r in wildcard.items()}
        self._any = _Table(anyhost, fold)
        # Most configs route on paths only: their requests skip the host entirely.
        self.uses_host = bool(exact or wildcard)

    def _tables(self, host: bytes) -> list[_Table]:
        """The host levels that apply to a (normalised) host, most specific first."""
        tables = []
        table = self._exact.get(host)
        if table is not None:
            tables.append(table)
        if self._wildcard:
            # Longest suffix first: every ".label..." tail, starting after the first label.
            dot = host.find(b".", 1)
            while dot > 0:
                table = self._wildcard.get(host[dot:])
                if table is not None:
                    tables.append(table)
                dot = host.find(b".", dot + 1)
        tables.append(self._any)
        return tables

    def match(self, host: bytes, method: bytes, path: bytes) -> RouteConfig | None:
        """The route for a request (path without query, normalised; host as sent, or b""
        without one), or None: no route (see `allowed` for 405 vs 404)."""
        if SEMICOLON in path:  # an int needle: one memchr (ascii.py), no find call
            path = route_path(path)  # `/admin;x` is /admin to Tomcat: it routes as /admin
        if self.fold_case:
            path = path.lower()
        if self.uses_host:
            for table in self._tables(normalise_host(host)):
                route = table.match(method, path)
                if route is not None:
                    return route
        else:
            route = self._any.match(method, path)
            if route is not None:
                return route
        return self.default

    def match_head(self, head: RequestHead) -> RouteConfig | None:
        """`match` for a parsed head: its Host (from the reader's scan, else its headers, as a
        head made from HTTP/2 pseudo-headers may carry it), method and path."""
        return self.match(head_host(head), head.method, head.path)

    def allowed(self, host: bytes, path: bytes) -> bytes:
        """For a request that matched no route: the methods that routes take for this host and
        path (b"GET, HEAD" for an `Allow` header), or b"" when no route serves the path (404).
        Only called on the slow path."""
        methods: set[bytes] = set()
        path = route_path(path)
        if self.fold_case:
            path = path.lower()
        for table in self._tables(normalise_host(host)):
            table.methods_for(path, methods)
        return b", ".join(sorted(methods))
