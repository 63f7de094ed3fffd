"""The router: examples of each specificity rule, and hypothesis against a brute-force reference
that ranks every route by the documented order."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.config.config import RouteConfig
from outwork.proxy.router import Router, normalise_host, route_methods


def route(name: str, methods: list[str] | None = None, **match: str) -> RouteConfig:
    return RouteConfig(
        upstream="u",
        name=name,
        methods=frozenset(methods) if methods is not None else None,
        host=match.get("host"),
        path=match.get("path"),
        path_prefix=match.get("path_prefix"),
    )


def names(router: Router, host: bytes, method: bytes, path: bytes) -> str | None:
    found = router.match(host, method, path)
    return found.name if found is not None else None


def test_host_exact_beats_wildcard_beats_any() -> None:
    router = Router(
        (
            route("any", path_prefix="/"),
            route("wild", host="*.example.com", path_prefix="/"),
            route("deeper", host="*.eu.example.com", path_prefix="/"),
            route("exact", host="api.example.com", path_prefix="/"),
        )
    )
    assert names(router, b"api.example.com", b"GET", b"/") == "exact"
    assert names(router, b"API.Example.COM:8443", b"GET", b"/") == "exact"  # case, port
    assert names(router, b"api.example.com.", b"GET", b"/") == "exact"  # trailing dot
    assert names(router, b"www.example.com", b"GET", b"/") == "wild"
    assert names(router, b"a.b.example.com", b"GET", b"/") == "wild"
    assert names(router, b"x.eu.example.com", b"GET", b"/") == "deeper"  # longer suffix
    assert names(router, b"example.com", b"GET", b"/") == "any"  # *.x does not match x
    assert names(router, b"other.org", b"GET", b"/") == "any"
    assert names(router, b"", b"GET", b"/") == "any"  # HTTP/1.0 without Host


def test_exact_path_beats_longer_prefix_and_methods_beat_none() -> None:
    router = Router(
        (
            route("root", path_prefix="/"),
            route("api", path_prefix="/api"),
            route("api-v2", path_prefix="/api/v2"),
            route("login", path="/api/login"),
            route("login-post", path="/api/login", methods=["POST"]),
            route("reads", path_prefix="/api/v2", methods=["GET"]),
        )
    )
    assert names(router, b"h", b"GET", b"/x") == "root"
    assert names(router, b"h", b"GET", b"/api/x") == "api"
    assert names(router, b"h", b"GET", b"/api/v2/x") == "reads"
    assert names(router, b"h", b"HEAD", b"/api/v2/x") == "reads"  # GET implies HEAD
    assert names(router, b"h", b"DELETE", b"/api/v2/x") == "api-v2"
    assert names(router, b"h", b"POST", b"/api/login") == "login-post"
    assert names(router, b"h", b"GET", b"/api/login") == "login"
    assert names(router, b"h", b"GET", b"/api/login/more") == "api"


def test_a_more_specific_host_without_the_path_falls_back() -> None:
    router = Router((route("exact", host="a.example", path="/only"), route("any", path_prefix="/")))
    assert names(router, b"a.example", b"GET", b"/only") == "exact"
    assert names(router, b"a.example", b"GET", b"/other") == "any"


def test_default_catches_the_rest_and_405_lists_methods() -> None:
    routes = (route("reads", path_prefix="/api", methods=["GET", "POST"]),)
    router = Router(routes)
    assert names(router, b"h", b"PUT", b"/api/x") is None
    assert router.allowed(b"h", b"/api/x") == b"GET, HEAD, POST"  # 405 with Allow
    assert router.allowed(b"h", b"/other") == b""  # 404
    with_default = Router(routes + (RouteConfig(upstream="u", name="fallback", default=True),))
    assert names(with_default, b"h", b"PUT", b"/api/x") == "fallback"
    assert names(with_default, b"h", b"GET", b"/other") == "fallback"


def test_first_in_file_wins_a_tie() -> None:
    router = Router((route("first", path_prefix="/a"), route("second", path_prefix="/a")))
    assert names(router, b"h", b"GET", b"/a") == "first"


def test_normalise_host() -> None:
    assert normalise_host(b"Example.COM:80") == b"example.com"
    assert normalise_host(b"[::1]:8080") == b"[::1]"
    assert normalise_host(b"[::1]") == b"[::1]"
    assert normalise_host(b"example.com.") == b"example.com"
    assert normalise_host(b"") == b""


# Brute-force reference: every route that matches, ranked by the documented order.

HOSTS = ["a.example.com", "b.example.com", "x.a.example.com", "example.com", "other.org"]
ROUTE_HOSTS = [None, "a.example.com", "example.com", "*.example.com", "*.a.example.com"]
PATHS = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/b"]
METHODS = ["GET", "HEAD", "POST", "PUT"]


def reference(routes: list[RouteConfig], host: str, method: str, path: str) -> str | None:
    best: tuple[object, ...] | None = None
    chosen = None
    host = host.lower().split(":")[0]
    for index, r in enumerate(routes):
        if r.default:
            continue
        if r.host is None:
            host_rank: tuple[int, int] = (0, 0)
        elif r.host.startswith("*."):
            if not (host.endswith(r.host[1:]) and len(host) > len(r.host) - 1):
                continue
            host_rank = (1, len(r.host))
        elif r.host == host:
            host_rank = (2, 0)
        else:
            continue
        if r.path is not None:
            if r.path != path:
                continue
            path_rank = (2, len(r.path))
        else:
            prefix = r.path_prefix or ""
            if not path.startswith(prefix):
                continue
            path_rank = (1, len(prefix))
        methods = route_methods(r)
        if methods is not None and method.encode() not in methods:
            continue
        key = (host_rank, path_rank, methods is not None, -index)
        if best is None or key > best:
            best, chosen = key, r.name
    if chosen is None:
        defaults = [r.name for r in routes if r.default]
        return defaults[0] if defaults else None
    return chosen


@st.composite
def route_lists(draw: st.DrawFn) -> list[RouteConfig]:
    routes = []
    for i in range(draw(st.integers(1, 8))):
        host = draw(st.sampled_from(ROUTE_HOSTS))
        kind = draw(st.sampled_from(["path", "path_prefix", "none"]))
        path = draw(st.sampled_from(PATHS))
        methods = draw(st.none() | st.sets(st.sampled_from(["GET", "POST", "PUT"]), min_size=1))
        if kind == "none" and host is None:
            kind = "path_prefix"
        routes.append(
            RouteConfig(
                upstream="u",
                name=f"r{i}",
                host=host,
                path=path if kind == "path" else None,
                path_prefix=path if kind == "path_prefix" else None,
                methods=frozenset(methods) if methods is not None else None,
            )
        )
    if draw(st.booleans()):
        routes.insert(draw(st.integers(0, len(routes))), RouteConfig("u", name="d", default=True))
    return routes


@settings(max_examples=400, deadline=None)
@given(
    route_lists(),
    st.sampled_from(HOSTS),
    st.sampled_from(["", ":8080"]),
    st.sampled_from(METHODS),
    st.sampled_from(PATHS + ["/a/b/c/d", "/c"]),
    st.booleans(),
)
def test_most_specific_route_wins_like_the_reference(
    routes: list[RouteConfig], host: str, port: str, method: str, path: str, shout: bool
) -> None:
    router = Router(tuple(routes))
    sent = path.upper() if shout else path  # paths match whatever their case
    found = router.match((host + port).upper().encode(), method.encode(), sent.encode())
    assert (found.name if found else None) == reference(routes, host, method, path)
    if found is None:
        # 405 exactly when some route serves this host and path with other methods.
        expected: set[bytes] = set()
        for r in routes:
            if not r.default and reference([replace(r, methods=None)], host, "GET", path):
                expected |= route_methods(r) or set()
        allowed = router.allowed(host.encode(), sent.encode())
        assert set(allowed.split(b", ")) - {b""} == expected


def test_paths_match_without_case_and_segment_parameters() -> None:
    routes = (route("admin", path_prefix="/admin"), route("secret", path="/Secret"))
    folding = Router(routes)
    for path in (b"/ADMIN", b"/Admin/x", b"/admin;jsessionid=1", b"/ADMIN;x/y"):
        assert names(folding, b"h", b"GET", path) == "admin"
    assert names(folding, b"h", b"GET", b"/secret;v=2") == "secret"
    assert folding.allowed(b"h", b"/SECRET") == b""  # no methods listed: any
    exact = Router(routes, case_sensitive=True)
    assert names(exact, b"h", b"GET", b"/ADMIN") is None
    assert names(exact, b"h", b"GET", b"/Secret") == "secret"
    assert names(exact, b"h", b"GET", b"/secret") is None


def test_match_head_takes_the_host_from_the_scan_or_the_headers() -> None:
    from outwork.http.messages import Framing, RequestHead
    from outwork.http.reader import RequestReader

    router = Router((route("exact", host="a.example"), route("any", path_prefix="/")))
    heads: list[RequestHead] = []

    class Sink:
        def on_request_head(self, head: RequestHead) -> None:
            heads.append(head)

        def on_request_body(self, data: bytes) -> None: ...
        def on_request_end(self) -> None: ...

    RequestReader(Sink(), 4096, 10, 10).feed(b"GET /x HTTP/1.1\r\nHost: A.example:80\r\n\r\n")
    found = router.match_head(heads[0])
    assert found is not None and found.name == "exact"
    # A head built without the reader (HTTP/2 streams): the host is looked up in its headers.
    h2 = RequestHead(
        method=b"GET",
        target=b"/x",
        version="1.1",
        headers=[(b"host", b"a.example")],
        block=b"",
        framing=Framing.NONE,
        content_length=-1,
        keep_alive=True,
        expect_continue=False,
    )
    found = router.match_head(h2)
    assert found is not None and found.name == "exact"
