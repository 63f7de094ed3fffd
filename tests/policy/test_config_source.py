"""Whatever a config file holds, loading it ends in a config or in line-numbered problems:
never another exception (a traceback from `check`, a dead supervisor on reload)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.config.load import MAX_CONFIG_FILE, load_config
from outwork.config.source import MAX_CONFIG_DEPTH, MAX_CONFIG_VALUES, ConfigError

BASE = """\
listeners:
  - name: public
    bind: 127.0.0.1:8080
    max_connections: 100
routes:
  - match: {path_prefix: /, host: api.example.com, methods: [GET]}
    upstream: demo
    max_body_size: 1MiB
upstreams:
  demo:
    targets: ["http://127.0.0.1:9000"]
    connect_timeout: 5s
    health_check: {path: /health, expect_status: 200-299}
    tls: {ca: ca.pem, sni: backend.example, min_version: "1.2"}
limits: {max_request_body: 10MiB, header_timeout: 10}
http2: {flood_window: 10s}
trusted_proxies: [10.0.0.0/8]
admin: {bind: 127.0.0.1:9901}
logging: {security_events: "-", access_log: access.log}
workers: 1
"""

# Pieces that YAML, its tags and the loader's own parsers give a meaning to.
TOKENS = [
    "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!str ", "!!null ",
    "!!python/name:os.system ", "!!python/object/apply:os.system ", "!!set ", "!!omap ",
    "!foo ", "! ", "&a ", "*a", "*b", "<<: ", "<<: *a", "[", "]", "{", "}", ", ", ": ", "- ",
    "\n", "\n  ", "\n    ", "\t", "0x", "0o", "0b", "2024-02-30", "2024-02-28", "12:30:00",
    "1e999", ".nan", ".inf", "-", "?", "? ", "|", ">", "#", "'", '"', "\\", "%YAML 1.1\n",
    "---\n", "...\n", "~", "null", "true", "yes", "0", "-1", "99999999999999999999", "1.2",
    "http://[::1", "https://", "http://a:99999", "[::1]:", "/", "\x00", "\x85", "\ufeff",
    '"\\0"', '"a\\x00b"', '"\\ud800"', "[::1", "é", "1MiB", "5s", "-5s", "300-200",
    "header:", "*.", "..", "a" * 40,
]  # fmt: skip
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # YAML's (1.1) line breaks
fragments = st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), max_size=12).map("".join)


def _check(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        lines = len(_LINE_BREAK.split(text))
        for problem in exc.problems:
            assert "please report this" not in problem.message, problem.format()
            assert problem.line is None or 1 <= problem.line <= lines, problem.format()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(line=st.integers(0, BASE.count("\n") - 1), fragment=fragments, replace=st.booleans())
def test_a_damaged_config_gives_problems_not_exceptions(
    tmp_path: Path, line: int, fragment: str, replace: bool
) -> None:
    lines = BASE.splitlines()
    if replace and ":" in lines[line]:
        key = lines[line].split(":", 1)[0]
        lines[line] = f"{key}: {fragment}"
    else:
        lines.insert(line, fragment)
    _check(tmp_path / "config.yaml", "\n".join(lines) + "\n")


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(at=st.integers(0, len(BASE)), fragment=fragments, cut=st.integers(0, 6))
def test_a_config_edited_anywhere_gives_problems_not_exceptions(
    tmp_path: Path, at: int, fragment: str, cut: int
) -> None:
    # Inside values too: a quoted target, an address, a duration (the loader's own parsers).
    _check(tmp_path / "config.yaml", BASE[:at] + fragment + BASE[at + cut :])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=fragments)
def test_yaml_ish_noise_gives_problems_not_exceptions(tmp_path: Path, text: str) -> None:
    _check(tmp_path / "config.yaml", text)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return [path]
    return [path] + [leaf for key, item in items for leaf in _leaves(item, path + (key,))]


_PATHS = _leaves(yaml.safe_load(BASE))
_scalars = (
    st.sampled_from(TOKENS)
    | st.text(max_size=20)
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.sampled_from(_PATHS), value=_values)
def test_any_value_anywhere_gives_problems_not_exceptions(
    tmp_path: Path, where: tuple[Any, ...], value: Any
) -> None:
    # Well-formed YAML with a wrong value: the schema and the loader's own parsers see it.
    config = yaml.safe_load(BASE)
    parent = config
    for key in where[:-1]:
        parent = parent[key]
    if where:
        parent[where[-1]] = value
    else:
        config = value
    _check(tmp_path / "config.yaml", yaml.safe_dump(config, allow_unicode=True))


def outwork_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2024-02-30", "'2024-02-30' is not a valid !!timestamp: day is out of range for month"),
        ("!!python/name:x y", "tag !!python/name:x is not allowed in a config"),
        ("!foo x", "tag !foo is not allowed in a config"),
        ("!!int 0x", "'0x' is not a valid !!int"),
        ("!!float x", "'x' is not a valid !!float"),
        ("!!set {a: null}", "tag !!set is not allowed in a config"),
        ("&a [*a]", "an alias refers to the value that contains it"),
        ('"a\\0b"', "a NUL character (\\0) is not allowed"),
    ],
)
def test_check_reports_a_bad_scalar_on_its_line(tmp_path: Path, value: str, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE.replace("  - name: public", f"  - name: {value}"))
    result = outwork_check(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{config}:2: listeners[0].name")
    assert message in result.stderr


def test_a_target_with_an_unclosed_ipv6_literal_is_a_problem(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE.replace('"http://127.0.0.1:9000"', '"http://[::1:9000"'))
    result = outwork_check(config)
    assert result.returncode == 1
    assert f"{config}:11: upstreams.demo.targets[0]: a target is http://host:port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_larger_than_the_cap_is_not_parsed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    filler = "# padding\n" * (MAX_CONFIG_FILE // 10 + 1)
    config.write_text(BASE + filler)
    result = outwork_check(config)
    assert result.returncode == 1
    assert result.stderr == f"{config}: larger than {MAX_CONFIG_FILE} bytes (1 MiB): not read\n"


def test_alias_expansion_is_bounded(tmp_path: Path) -> None:
    # "Billion laughs": each level lists the previous one nine times.
    lines = ['l0: &l0 ["lol"]']
    for level in range(1, 10):
        items = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{items}]")
    config = tmp_path / "config.yaml"
    config.write_text(BASE + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert f"more than {MAX_CONFIG_VALUES} values" in info.value.problems[0].message


@pytest.mark.parametrize("kind", ["[", "{a: "])
def test_deep_nesting_is_bounded(tmp_path: Path, kind: str) -> None:
    closing = "]" if kind == "[" else "}"
    config = tmp_path / "config.yaml"
    config.write_text("name: " + kind * 5000 + "1" + closing * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    [problem] = info.value.problems
    assert (problem.line, problem.message) == (1, f"nested deeper than {MAX_CONFIG_DEPTH} levels")


def test_a_long_list_is_refused_while_it_is_parsed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("routes:\n" + "- a\n" * (MAX_CONFIG_VALUES + 10))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    [problem] = info.value.problems
    assert problem.message == f"more than {MAX_CONFIG_VALUES} values"
    assert problem.line is not None and problem.line < MAX_CONFIG_VALUES + 10  # where it stopped
