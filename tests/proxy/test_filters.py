"""Policies through the filter API, end to end: the `headers` step removes and adds response
headers for HTTP/1.1 and HTTP/2 alike (curl, a real backend), `default_policies` apply to every
route before its own, and the config refuses what it cannot compile, at its key."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.config.load import load_config
from outwork.config.source import ConfigError
from outwork.filters.headers import build
from outwork.filters.headers_spec import RESERVED, HeadersSpec
from outwork.http.messages import Framing, ResponseHead
from tests.proxy import test_listener_tls
from tests.proxy.test_h2 import curl_h2
from tests.proxy.test_listener_tls import tls_config

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

POLICIES: dict[str, Any] = {
    "baseline": {
        "headers": {
            "remove": ["Server", "X-Powered-By", "X-Backend"],
            "add": {"Strict-Transport-Security": "max-age=31536000"},
        }
    },
    "nosniff": {"headers": {"add": {"X-Content-Type-Options": "nosniff"}}},
}
ROUTES = [
    {"match": {"path_prefix": "/plain"}, "upstream": "backend", "name": "plain"},
    {"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["nosniff"]},
]


def _headers(raw: bytes) -> dict[str, str]:
    """The last response's headers from `curl -D -` (lower-case names)."""
    block = raw.replace(b"\r\n", b"\n").split(b"\n\n")[-2]
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (line.decode().partition(":") for line in block.split(b"\n")[1:])
    }


def _check(headers: dict[str, str], route_policy: bool) -> None:
    assert "x-backend" not in headers  # removed, whatever its case
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["x-seen-accept"] == "*/*"  # the rest passes
    assert ("x-content-type-options" in headers) is route_policy


def test_headers_policy_over_http1_and_http2(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config.update(policies=POLICIES, default_policies=["baseline"], routes=ROUTES)
    gw = make_gateway(config)
    for version in ("--http1.1", "--http2"):
        for path, route_policy in (("/x", True), ("/plain", False)):
            got = curl_h2(gw, pki, path, version, "-D", "-", "-o", "/dev/null")
            assert got.returncode == 0, got.stderr
            _check(_headers(got.stdout), route_policy)


def test_an_added_header_replaces_the_upstreams(make_backend, make_gateway, tmp_path):
    backend = make_backend()
    policies = {"p": {"headers": {"add": {"X-Backend": "hidden"}}}}
    config = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["p"]}],
        "upstreams": {"backend": {"targets": [backend.url]}},
        "policies": policies,
    }
    gw = make_gateway(config)
    got = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", gw.url + "/"], capture_output=True, timeout=30
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.lower().count(b"x-backend:") == 1
    assert _headers(got.stdout)["x-backend"] == "hidden"


BASE = """\
listeners: [{name: public, bind: "127.0.0.1:0"}]
routes: [{match: {path_prefix: /}, upstream: u, policies: [p]}]
upstreams: {u: {targets: ["http://127.0.0.1:9000"]}}
"""


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.format() for p in info.value.problems]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("policies: {}\n", "unknown policy 'p'"),
        ("policies: {p: {nope: {}}}\n", "unknown policy step 'nope'"),
        ("policies: {p: {headers: {remove: [Content-Length]}}}\n", "content-length"),
        ('policies: {p: {headers: {add: {"X-A": "a\\r\\nb: c"}}}}\n', "headers"),
        ('policies: {p: {headers: {add: {"X A": "b"}}}}\n', "headers"),
        ("policies: {p: {}}\ndefault_policies: [q]\n", "unknown policy 'q'"),
    ],
)
def test_the_config_refuses_what_it_cannot_compile(tmp_path, extra, expected):
    found = _problems(tmp_path, BASE + extra)
    assert any(expected in problem for problem in found), found


def test_chains_are_compiled_once_default_first(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE
        + "policies: {p: {headers: {add: {A: b}}}, d: {headers: {remove: [Server]}}}\n"
        + "default_policies: [d]\n"
    )
    route = load_config(path).routes[0]
    assert [f.remove for f in route.filters] == [  # type: ignore[attr-defined]
        frozenset({b"server"}),
        frozenset({b"a"}),
    ]


NAMES = st.text(alphabet="abcXYZ-_019!", min_size=1, max_size=12)
VALUES = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x17F), max_size=20)


@given(st.lists(NAMES, max_size=5), st.dictionaries(NAMES, VALUES, max_size=5))
def test_headers_spec_accepts_only_what_it_can_send_safely(remove, add):
    """Whatever the spec accepts makes well-formed header lines, and keeps framing intact."""
    try:
        spec = msgspec.convert({"remove": remove, "add": add}, HeadersSpec, strict=True)
    except msgspec.ValidationError:
        return
    head = ResponseHead(200, b"OK", b"content-type: text/plain\r\nServer: x\r\n", Framing.LENGTH, 0)
    build(spec).on_response_head(None, head, lambda verdict: None)  # type: ignore[arg-type]
    for line in head.block.split(b"\r\n")[:-1]:
        name, colon, value = line.partition(b":")
        assert colon and name and name.lower().decode() not in RESERVED
        assert b"\r" not in value and b"\n" not in value and b"\0" not in value
    assert head.block.endswith(b"\r\n")
    removed = {n.lower() for n in remove} | {n.lower() for n in add}
    assert ("content-type" in removed) != (b"content-type: text/plain\r\n" in head.block)
