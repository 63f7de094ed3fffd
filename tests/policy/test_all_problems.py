"""`outwork check` shows every problem of a file in one run, each on its line, with "did you
mean" for a near miss; for policy steps registered later too (a step type registered here)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.cli import main
from outwork.config.convert import did_you_mean
from outwork.config.load import load_config
from outwork.config.source import ConfigError
from outwork.filters import REGISTRY
from tests.policy import probe_step as probe_step_module
from tests.policy.probe_step import ProbeFilter
from tests.policy.test_config import certs  # noqa: F401  (the fixture)


@pytest.fixture
def probe_step() -> Iterator[None]:
    probe_step_module.register()
    try:
        yield
    finally:
        probe_step_module.unregister()


# One file, every kind of mistake; `# <- name` marks the line each problem must name.
BROKEN = """\
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certificates: [{cert: cert.pem, key: key.pem}]
      heartbeet: true                               # <- heartbeet
  - name: second
    bind: 127.0.0.1:0
    max_conections: 5                               # <- max_conections
routes:
  - match: {path_prefix: /partner}
    upstream: api
    policies: [partnrs]                             # <- partnrs
  - match: {path_prefix: /}
    upstream: api
    policies: [partners, nobody]                    # <- nobody
upstreams:
  api: {targets: ["http://127.0.0.1:9000"]}
trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]           # <- trusted
admin:
  bind: 127.0.0.1:0
  token: env:OUTWORK_TEST_UNSET_TOKEN               # <- admin-token
policies:
  partners:
    probe:
      rate: 10/fortnight                            # <- rate
      allow: [192.0.2.0/24, 192.0.2.300/32]         # <- allow
      token: file:no-such-secret                    # <- token
      brust: 5                                      # <- brust
    header:                                         # <- header
      remove: [Server]
  other:
    headers: {remove: [Server]}
default_policies: [othre]                           # <- othre
loging: {security_events: "-"}                      # <- loging
"""


def line(marker: str) -> int:
    return next(i for i, text in enumerate(BROKEN.splitlines(), 1) if f"# <- {marker}" in text)


def test_check_reports_every_mistake_of_a_file_at_once(
    tmp_path: Path,
    certs: Path,  # noqa: F811
    probe_step: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OUTWORK_TEST_UNSET_TOKEN", raising=False)
    for name in ("cert.pem", "key.pem"):
        shutil.copy(certs / name, tmp_path / name)
    config = tmp_path / "config.yaml"
    config.write_text(BROKEN)
    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert result.exit_code == 1
    assert result.stdout == ""
    f = str(config)
    assert result.stderr.splitlines() == [
        f"{f}:{line('heartbeet')}: listeners[0].tls.heartbeet: unknown key;"
        ' did you mean "heartbeat"?',
        f"{f}:{line('max_conections')}: listeners[1].max_conections: unknown key;"
        ' did you mean "max_connections"?',
        f"{f}:{line('partnrs')}: routes[0].policies[0]: unknown policy 'partnrs'"
        ' (known: other, partners); did you mean "partners"?',
        f"{f}:{line('nobody')}: routes[1].policies[1]: unknown policy 'nobody'"
        " (known: other, partners)",
        f"{f}:{line('trusted')}: trusted_proxies[1]: not an IP address or CIDR:"
        " 10.0.0.1/8 has host bits set",
        f"{f}:{line('admin-token')}: admin.token: env:OUTWORK_TEST_UNSET_TOKEN:"
        " the environment variable is not set",
        f"{f}:{line('rate')}: policies.partners.probe.rate: invalid rate '10/fortnight'"
        " (expected e.g. 10/s, 1000/m, 5/h, 100/10s)",
        f"{f}:{line('allow')}: policies.partners.probe.allow[1]: not an IP address or CIDR:"
        " '192.0.2.300/32' does not appear to be an IPv4 or IPv6 network",
        f"{f}:{line('token')}: policies.partners.probe.token: file:no-such-secret:"
        f" cannot read {tmp_path / 'no-such-secret'}: No such file or directory",
        f'{f}:{line("brust")}: policies.partners.probe.brust: unknown key; did you mean "burst"?',
        f"{f}:{line('header')}: policies.partners.header: unknown policy step 'header'"
        f' (known: {", ".join(REGISTRY)}); did you mean "headers"?',
        f"{f}:{line('othre')}: default_policies[0]: unknown policy 'othre'"
        ' (known: other, partners); did you mean "other"?',
        f'{f}:{line("loging")}: loging: unknown key; did you mean "logging"?',
    ]


def test_a_step_with_problems_still_leaves_its_policy_known(
    tmp_path: Path, probe_step: None
) -> None:
    """No cascade: the route naming a policy whose step is broken, or an upstream that is
    broken, is not told the name is unknown."""
    text = (
        "listeners: [{name: public, bind: 127.0.0.1:0}]\n"
        "routes:\n"
        "  - {match: {path_prefix: /}, upstream: api, policies: [p]}\n"
        "upstreams:\n"
        "  api: {targets: [http://127.0.0.1:9000], retries: many}\n"
        "policies:\n"
        "  p: {probe: {rate: 10/x}}\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert [p.path for p in info.value.problems] == [
        "upstreams.api.retries",
        "policies.p.probe.rate",
    ]


def test_a_valid_step_with_its_types_compiles(
    tmp_path: Path,
    certs: Path,  # noqa: F811
    probe_step: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTWORK_TEST_PROBE_TOKEN", "s3cret")
    for name in ("cert.pem", "key.pem"):
        shutil.copy(certs / name, tmp_path / name)
    config = tmp_path / "config.yaml"
    config.write_text(
        "listeners: [{name: public, bind: 127.0.0.1:0}]\n"
        "routes: [{match: {path_prefix: /}, upstream: api, policies: [p]}]\n"
        "upstreams: {api: {targets: [http://127.0.0.1:9000]}}\n"
        "policies:\n"
        "  p: {probe: {rate: 100/10s, allow: [10.0.0.0/8, '2001:db8::/32'],"
        " token: env:OUTWORK_TEST_PROBE_TOKEN}}\n"
    )
    (probe,) = load_config(config).routes[0].filters
    assert isinstance(probe, ProbeFilter)
    spec = probe.spec
    assert (spec.rate.count, spec.rate.period, spec.rate.per_second) == (100, 10.0, 10.0)
    assert [str(c.network) for c in spec.allow] == ["10.0.0.0/8", "2001:db8::/32"]
    assert spec.token is not None and spec.token.value == b"s3cret"
    assert "s3cret" not in repr(spec)


def test_the_outwork_command_reports_them_too(
    tmp_path: Path,
    certs: Path,  # noqa: F811
) -> None:
    """The same file through the real command (a process of its own, without the probe step,
    whose mistakes then read as one unknown step), its environment without the token."""
    for name in ("cert.pem", "key.pem"):
        shutil.copy(certs / name, tmp_path / name)
    config = tmp_path / "config.yaml"
    config.write_text(BROKEN)
    env = {k: v for k, v in os.environ.items() if k != "OUTWORK_TEST_UNSET_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    found = [line.split(": ", 2)[:2] for line in result.stderr.splitlines()]
    assert found == [
        [f"{config}:{line('heartbeet')}", "listeners[0].tls.heartbeet"],
        [f"{config}:{line('max_conections')}", "listeners[1].max_conections"],
        [f"{config}:{line('partnrs')}", "routes[0].policies[0]"],
        [f"{config}:{line('nobody')}", "routes[1].policies[1]"],
        [f"{config}:{line('trusted')}", "trusted_proxies[1]"],
        [f"{config}:{line('admin-token')}", "admin.token"],
        [f"{config}:{line('rate') - 1}", "policies.partners.probe"],
        [f"{config}:{line('header')}", "policies.partners.header"],
        [f"{config}:{line('othre')}", "default_policies[0]"],
        [f"{config}:{line('loging')}", "loging"],
    ]
    real_steps = ", ".join(name for name in REGISTRY if name != "probe")
    assert f"unknown policy step 'probe' (known: {real_steps})" in result.stderr


def test_no_suggestion_when_nothing_is_close() -> None:
    assert did_you_mean("heartbeet", ["heartbeat", "alpn"]) == '; did you mean "heartbeat"?'
    assert did_you_mean("colour", ["listeners", "routes", "upstreams"]) == ""


RICH = {
    "listeners": [
        {"name": "public", "bind": "127.0.0.1:0", "tls": {"certificates": [
            {"cert": "cert.pem", "key": "key.pem"}], "alpn": ["h2"], "session_tickets": {
            "rotation": "1h"}}},
        {"name": "plain", "bind": "127.0.0.1:0", "max_connections": 10},
    ],
    "routes": [
        {"name": "r", "match": {"path_prefix": "/a", "methods": ["GET"]}, "upstream": "api",
         "policies": ["p"], "max_body_size": "1MiB"},
        {"default": True, "upstream": "api"},
    ],
    "upstreams": {"api": {"targets": ["http://127.0.0.1:9000"], "health_check": {"path": "/"},
                          "passive_health": {}, "retries": 2}},
    "policies": {"p": {"headers": {"remove": ["Server"], "add": {"X-A": "b"}}}},
    "default_policies": ["p"],
    "trusted_proxies": ["10.0.0.0/8"],
    "limits": {"max_request_body": "2MiB"},
    "http2": {"flood_window": "5s"},
    "admin": {"bind": "127.0.0.1:0", "allowed_hosts": ["gw.example"]},
    "scan": {"timeout": "3s"},
}  # fmt: skip
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.sampled_from(["", "x", "10/s", "1.2", "0", "/", "10.0.0.1/8", "env:NOPE"]),
    st.just([]),
    st.just({}),
    st.just(["x"]),
    st.just({"x": 1}),
)


def _paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


PATHS = _paths(RICH)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(PATHS), JUNK), min_size=1, max_size=4))
def test_any_damage_is_problems_on_lines_never_a_crash(
    tmp_path: Path,
    certs: Path,  # noqa: F811
    damage: list[tuple[tuple[str | int, ...], object]],
) -> None:
    """Whatever values are wrong, and however many: problems with lines, each check still run
    on what converted (no `please report this`), or a config that loads."""
    config = copy.deepcopy(RICH)
    for path, junk in damage:
        target: Any = config
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = junk
        except (KeyError, IndexError, TypeError):
            continue  # an earlier damage replaced a parent
    for name in ("cert.pem", "key.pem"):
        if not (tmp_path / name).exists():
            shutil.copy(certs / name, tmp_path / name)
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(config))
    try:
        load_config(file)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert "please report this" not in problem.message, problem
            assert problem.line is not None, problem
