"""Config loading: every problem is reported with its file, line and key path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from outwork.config.load import load_config, parse_address, parse_size
from outwork.config.schema import Http2Spec, LimitsSpec, TlsLimitsSpec
from outwork.config.source import ConfigError
from outwork.http.path import PathRules
from tests.conftest import ROOT

GOOD = """\
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls:
      certificates: [{cert: cert.pem, key: key.pem}]
      heartbeat: false
routes:
  - match: {path_prefix: /}
    upstream: demo
  - match: {path: /exact}
    upstream: demo
upstreams:
  demo: {targets: ["http://127.0.0.1:9000"]}
logging: {security_events: "-"}
admin: {bind: 127.0.0.1:9901}
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a self-signed cert.pem/key.pem (made by the demo's script)."""
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(directory)], check=True)
    return directory


def write(tmp_path: Path, certs: Path, text: str) -> Path:
    for name in ("cert.pem", "key.pem"):
        if not (tmp_path / name).exists():
            shutil.copy(certs / name, tmp_path / name)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, certs: Path, text: str) -> list[str]:
    path = write(tmp_path, certs, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.format().replace(str(path), "config.yaml") for p in info.value.problems]


def test_good_config_compiles(tmp_path: Path, certs: Path) -> None:
    config = load_config(write(tmp_path, certs, GOOD))
    assert [listener.name for listener in config.listeners] == ["public"]
    tls = config.listeners[0].tls
    assert tls is not None and tls.alpn_protocols == ("h2", "http/1.1") and not tls.heartbeat
    assert config.upstreams["demo"].targets[0].port == 9000
    assert config.admin is not None and config.admin.port == 9901
    assert config.security_events == "-"


def test_rejects_unknown_key_at_its_line(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("    bind: 127.0.0.1:8443\n", "    bind: 127.0.0.1:8443\n    bnid: x\n")
    assert problems(tmp_path, certs, text) == [
        'config.yaml:4: listeners[0].bnid: unknown key; did you mean "bind"?'
    ]


def test_rejects_unknown_key_inside_an_upstream(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace(
        '{targets: ["http://127.0.0.1:9000"]}', '{targets: ["http://h:1"], retires: 3}'
    )
    assert problems(tmp_path, certs, text) == [
        'config.yaml:13: upstreams.demo.retires: unknown key; did you mean "retries"?'
    ]


def test_rejects_bind_without_port(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("bind: 127.0.0.1:8443", "bind: localhost")
    assert problems(tmp_path, certs, text) == [
        "config.yaml:3: listeners[0].bind: expected host:port"
    ]


def test_rejects_wrong_type_with_its_line(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("heartbeat: false", "heartbeat: maybe")
    assert problems(tmp_path, certs, text) == [
        "config.yaml:6: listeners[0].tls.heartbeat: expected `bool`, got `str`"
    ]


def test_rejects_route_to_unknown_upstream(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace(
        "    upstream: demo\n  - match: {path:", "    upstream: nope\n  - match: {path:"
    )
    assert problems(tmp_path, certs, text) == [
        "config.yaml:9: routes[0].upstream: unknown upstream 'nope' (known: demo)"
    ]


def test_collects_several_problems(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("bind: 127.0.0.1:8443", "bind: 127.0.0.1:99999").replace(
        "upstream: demo\n  - match: {path:", "upstream: other\n  - match: {path:"
    )
    assert problems(tmp_path, certs, text) == [
        "config.yaml:3: listeners[0].bind: invalid port '99999' (expected 0-65535)",
        "config.yaml:9: routes[0].upstream: unknown upstream 'other' (known: demo)",
    ]


def test_rejects_yaml_syntax_error_at_its_line(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("upstreams:\n", "upstreams:\n  demo: [unclosed\n")
    (problem,) = problems(tmp_path, certs, text)
    assert problem.startswith("config.yaml:14: YAML syntax error")


def test_rejects_duplicate_key(tmp_path: Path, certs: Path) -> None:
    text = GOOD + "routes: []\n"
    assert problems(tmp_path, certs, text) == ["config.yaml:16: routes: duplicate key"]


def test_rejects_missing_required_key(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("    upstream: demo\n  - match: {path:", "  - match: {path:")
    assert problems(tmp_path, certs, text) == [
        "config.yaml:8: routes[0]: missing required key `upstream`"
    ]


def test_rejects_missing_certificate_file(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("cert: cert.pem", "cert: missing.pem")
    (problem,) = problems(tmp_path, certs, text)
    assert problem.startswith(
        "config.yaml:5: listeners[0].tls.certificates[0].cert: file not found"
    )


def test_rejects_key_that_does_not_match_certificate(tmp_path: Path, certs: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(other)], check=True)
    text = GOOD.replace("key: key.pem", "key: other/key.pem")
    (problem,) = problems(tmp_path, certs, text)
    assert problem.startswith("config.yaml:5: listeners[0].tls.certificates[0]: cannot load")
    assert "does not match" in problem


def test_rejects_other_schemes_and_path_targets(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace('["http://127.0.0.1:9000"]', '["ftp://127.0.0.1:9000", "http://h:1/path"]')
    assert problems(tmp_path, certs, text) == [
        "config.yaml:13: upstreams.demo.targets[0]: "
        "a target is http://host:port or https://host:port",
        "config.yaml:13: upstreams.demo.targets[1]: "
        "a target is scheme://host:port, without path or credentials",
    ]


def test_rejects_match_without_exactly_one_condition(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace("match: {path: /exact}", "match: {path: /a, path_prefix: /b}")
    assert problems(tmp_path, certs, text) == [
        "config.yaml:10: routes[1].match: give at most one of path_prefix or path"
    ]


def test_rejects_empty_file(tmp_path: Path, certs: Path) -> None:
    assert problems(tmp_path, certs, "") == ["config.yaml: the file is empty"]


def test_plaintext_listener_needs_no_tls(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace(
        "    tls:\n      certificates: [{cert: cert.pem, key: key.pem}]\n      heartbeat: false\n",
        "",
    )
    config = load_config(write(tmp_path, certs, text))
    assert config.listeners[0].tls is None


@pytest.mark.parametrize(
    "text,host,port",
    [
        ("127.0.0.1:80", "127.0.0.1", 80),
        ("[::1]:8443", "::1", 8443),
        ("localhost:0", "localhost", 0),
    ],
)
def test_parse_address(text: str, host: str, port: int) -> None:
    address = parse_address(text)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize("text", ["8443", ":80", "host:", "host:x", "[::1]", "[zz]:1", "a b:1"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_rejects_alias_expansion_bomb(tmp_path: Path, certs: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for name, prev in zip("bcdefg", "abcdef", strict=True):
        bomb += f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    (problem,) = problems(tmp_path, certs, bomb)
    assert "more than 100000 values" in problem


ROUTED = """\
listeners:
  - {name: public, bind: 127.0.0.1:8080}
routes:
  - match: {host: API.Example.com., path_prefix: /v1, methods: [get, POST]}
    upstream: demo
    name: api-v1
    max_body_size: 2GiB
  - match: {host: "*.example.com"}
    upstream: demo
  - default: true
    upstream: demo
upstreams:
  demo: {targets: ["http://127.0.0.1:9000"]}
limits:
  max_request_body: 1MiB
  max_request_line: 4096
  body_timeout: 5
  max_requests_per_connection: 50
trusted_proxies: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]
"""


def test_routes_limits_and_trusted_proxies_compile(tmp_path: Path, certs: Path) -> None:
    config = load_config(write(tmp_path, certs, ROUTED))
    api, wild, fallback = config.routes
    assert (api.name, api.host, api.path_prefix) == ("api-v1", "api.example.com", "/v1")
    assert api.methods == frozenset({"GET", "POST"}) and api.max_body_size == 2 << 30
    assert (wild.name, wild.host, wild.max_body_size) == ("demo", "*.example.com", 1 << 20)
    assert fallback.default and fallback.name == "demo"  # unnamed: its upstream's name
    limits = config.limits
    assert (limits.max_request_body, limits.max_request_line) == (1 << 20, 4096)
    assert (limits.body_timeout, limits.max_requests_per_connection) == (5.0, 50)
    assert [str(n) for n in config.trusted_proxies] == [
        "10.0.0.0/8",
        "2001:db8::/32",
        "192.0.2.7/32",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("max_body_size: 2GiB", "max_body_size: 2 gigs", "routes[0].max_body_size: invalid size"),
        ("max_body_size: 2GiB", "max_body_size: 2TiB", "routes[0].max_body_size: '2TiB' is larger"),
        ("methods: [get, POST]", "methods: [TRACE]", "routes[0].match.methods: method TRACE"),
        ("host: API.Example.com.,", "host: api.example.com:443,", "routes[0].match.host: invalid"),
        ("host: API.Example.com.,", "host: a..b,", "routes[0].match.host: invalid host"),
        ('- match: {host: "*.example.com"}', "- name: api-v1\n    match: {host: a}", "duplicate"),
        ('- match: {host: "*.example.com"}', "- default: true", "routes[2].default: routes[1]"),
        ("  - default: true\n", "  - match: {host: a}\n    default: true\n", "remove match"),
        ('- match: {host: "*.example.com"}', "- name: x", "routes[1]: missing required key"),
        ("10.0.0.0/8", "10.0.0.1/8", "trusted_proxies[0]: not an IP address or CIDR"),
        (
            "max_requests_per_connection: 50",
            "max_requests_per_connection: 0",
            "expected `int` >= 1",
        ),
    ],
)
def test_rejects_bad_route_and_limit_values(
    tmp_path: Path, certs: Path, old: str, new: str, expected: str
) -> None:
    assert old in ROUTED
    found = problems(tmp_path, certs, ROUTED.replace(old, new))
    assert len(found) == 1 and expected in found[0], found


def test_rejects_route_named_after_another_upstream(tmp_path: Path, certs: Path) -> None:
    text = ROUTED.replace("name: api-v1", "name: other").replace(
        "upstreams:\n", "upstreams:\n  other: {targets: ['http://127.0.0.1:9001']}\n"
    )
    assert problems(tmp_path, certs, text) == [
        "config.yaml:6: routes[0].name: 'other' is the name of another upstream (the name of its"
        " unnamed routes): choose another"
    ]


@pytest.mark.parametrize(
    ("text", "size"),
    [(0, 0), (1000, 1000), ("1000", 1000), ("10MiB", 10 << 20), ("2 GiB", 2 << 30), ("1KB", 1000)],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5MiB", "-1", "10 mb", "MiB", "2PiB", True])
def test_parse_size_rejects(text: str | int) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_paths_are_strict_by_default_and_relaxing_warns(tmp_path: Path, certs: Path) -> None:
    config = load_config(write(tmp_path, certs, GOOD))
    assert config.paths == PathRules() and config.warnings == ()
    relaxed = GOOD + "paths: {normalize: false, merge_slashes: false, escaped_slashes: decode}\n"
    config = load_config(write(tmp_path, certs, relaxed))
    assert config.paths == PathRules(False, False, "decode")
    assert [w.split(": ", 2)[1] for w in config.warnings] == [
        "paths.normalize",
        "paths.merge_slashes",
    ]
    keep = load_config(write(tmp_path, certs, GOOD + "paths: {escaped_slashes: keep}\n"))
    assert len(keep.warnings) == 1 and "paths.escaped_slashes" in keep.warnings[0]


def test_a_paused_upstream_cap_at_a_pool_size_warns(tmp_path: Path, certs: Path) -> None:
    small_pool = GOOD.replace(
        'demo: {targets: ["http://127.0.0.1:9000"]}',
        'demo: {targets: ["http://127.0.0.1:9000"], max_connections: 100}',
    )
    assert load_config(write(tmp_path, certs, small_pool)).warnings == ()
    capped = small_pool + "limits: {max_paused_upstreams_per_address: 100}\n"
    (warning,) = load_config(write(tmp_path, certs, capped)).warnings
    assert "max_paused_upstreams_per_address: warning: 100 is not below upstream 'demo'" in warning


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("paths: {escaped_slashes: allow}\n", "paths.escaped_slashes: unknown escaped_slashes"),
        ("paths: {normalise: true}\n", "paths.normalise: unknown key"),
    ],
)
def test_rejects_bad_paths_section(tmp_path: Path, certs: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, certs, GOOD + text)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    "route_path",
    ["/a//b", "/api/../admin", "/%61dmin", "/a%2fb", "/admin;x", "/caf\u00e9", "/a/.", "/a?b"],
)
def test_rejects_route_paths_a_normalised_request_cannot_match(
    tmp_path: Path, certs: Path, route_path: str
) -> None:
    text = GOOD.replace("{path: /exact}", "{path: " + repr(route_path) + "}")
    found = problems(tmp_path, certs, text)
    assert len(found) == 1 and "routes[1].match.path: not a normalised path" in found[0], found


def test_routes_differing_only_in_case_are_refused(tmp_path: Path, certs: Path) -> None:
    text = GOOD.replace(
        "  - match: {path: /exact}\n    upstream: demo\n",
        "  - match: {path: /exact}\n    upstream: demo\n"
        "  - match: {path: /EXACT}\n    upstream: demo\n",
    )
    found = problems(tmp_path, certs, text)
    assert len(found) == 1 and "routes[2].match: differs from routes[1] only in" in found[0]
    config = load_config(write(tmp_path, certs, text + "paths: {case_sensitive: true}\n"))
    assert config.paths.case_sensitive and "paths.case_sensitive" in config.warnings[0]


def test_every_limit_reaches_the_compiled_config(tmp_path: Path, certs: Path) -> None:
    """Each key of `limits`, `http2` and a listener's `tls.limits`, set one above its default,
    comes out in the compiled config (sizes and durations parsed)."""
    parsed = {"flood_window": ("11s", 11.0), "stall_timeout": ("31s", 31.0)}
    parsed["max_request_body"] = ("2MiB", 2 << 20)
    parsed["max_discarded_body"] = ("2MiB", 2 << 20)
    sections: dict[str, dict[str, tuple[object, object]]] = {}
    for section, spec in (("limits", LimitsSpec), ("http2", Http2Spec), ("tls", TlsLimitsSpec)):
        fields = msgspec.structs.fields(spec)
        sections[section] = {
            f.name: parsed.get(f.name) or (f.default + 1, f.default + 1)  # type: ignore[operator]
            for f in fields
        }

    def lines(section: str) -> str:
        return ", ".join(f"{name}: {given}" for name, (given, _) in sections[section].items())

    text = GOOD.replace("heartbeat: false", f"heartbeat: false\n      limits: {{{lines('tls')}}}")
    text += f"limits: {{{lines('limits')}}}\nhttp2: {{{lines('http2')}}}\n"
    config = load_config(write(tmp_path, certs, text))
    tls = config.listeners[0].tls
    assert tls is not None
    compiled = {"limits": config.limits, "http2": config.http2, "tls": tls.limits}
    for section, found in compiled.items():
        expected = {name: value for name, (_, value) in sections[section].items()}
        assert {name: getattr(found, name) for name in expected} == expected
