"""The upstream keys: balancing, health checks, passive ejection, timeouts, retries, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from outwork.config.config import HealthCheckConfig, PassiveHealthConfig, UpstreamConfig
from outwork.config.load import load_config
from outwork.config.source import ConfigError

BASE = """\
listeners:
  - name: public
    bind: 127.0.0.1:8080
routes:
  - match: {path_prefix: /}
    upstream: demo
upstreams:
  demo:
    targets: ["http://127.0.0.1:9000", "http://127.0.0.1:9001"]
"""


def load(tmp_path: Path, extra: str = "") -> UpstreamConfig:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + extra)
    return load_config(path).upstreams["demo"]


def problems(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.format().replace(str(path), "config.yaml") for p in info.value.problems]


def test_defaults(tmp_path: Path) -> None:
    upstream = load(tmp_path)
    assert upstream.load_balancing == "round_robin"
    assert upstream.hash_header is None
    assert (upstream.connect_timeout, upstream.read_timeout, upstream.write_timeout) == (5, 30, 30)
    assert upstream.retries == 1
    assert (upstream.max_connections, upstream.max_pending) == (1024, 1024)
    assert upstream.health_check is None and upstream.passive_health is None


def test_all_keys_compile(tmp_path: Path) -> None:
    upstream = load(
        tmp_path,
        "    load_balancing: consistent_hash\n"
        "    hash_on: 'header:X-User'\n"
        "    write_timeout: 2m\n"
        "    retries: 0\n"
        "    max_connections: 10\n"
        "    max_pending: 0\n"
        "    health_check: {path: /healthz, interval: 0.5, timeout: 1, expect_status: 204}\n"
        "    passive_health: {consecutive_failures: 2, ejection_time: 1m}\n",
    )
    assert upstream.load_balancing == "consistent_hash"
    assert upstream.hash_header == b"x-user"
    assert upstream.write_timeout == 120
    assert (upstream.retries, upstream.max_connections, upstream.max_pending) == (0, 10, 0)
    assert upstream.health_check == HealthCheckConfig(
        path="/healthz",
        interval=0.5,
        timeout=1.0,
        healthy_threshold=2,
        unhealthy_threshold=3,
        expect_status=(204, 204),
    )
    assert upstream.passive_health == PassiveHealthConfig(consecutive_failures=2, ejection_time=60)


def test_rejects_unknown_load_balancing(tmp_path: Path) -> None:
    assert problems(tmp_path, "    load_balancing: random\n") == [
        "config.yaml:10: upstreams.demo.load_balancing: unknown load_balancing 'random'"
        " (expected round_robin, least_connections, consistent_hash)"
    ]


def test_rejects_bad_hash_on(tmp_path: Path) -> None:
    assert problems(
        tmp_path, "    load_balancing: consistent_hash\n    hash_on: 'cookie:sid'\n"
    ) == [
        "config.yaml:11: upstreams.demo.hash_on: invalid hash_on 'cookie:sid'"
        " (expected client_address or header:NAME)"
    ]
    assert problems(tmp_path, "    load_balancing: consistent_hash\n    hash_on: 'header:a b'\n")


def test_rejects_hash_on_without_consistent_hash(tmp_path: Path) -> None:
    assert problems(tmp_path, "    hash_on: 'header:X-User'\n") == [
        "config.yaml:10: upstreams.demo.hash_on: hash_on needs load_balancing: consistent_hash"
    ]


def test_rejects_bad_health_check_values(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        "    health_check:\n"
        "      path: healthz\n"
        "      interval: 10ms\n"
        "      expect_status: 399-200\n",
    ) == [
        "config.yaml:11: upstreams.demo.health_check.path: must start with / and hold only"
        " visible ASCII",
        "config.yaml:12: upstreams.demo.health_check.interval: invalid duration '10ms'"
        " (expected e.g. 90s, 30m, 12h, 7d)",
        "config.yaml:13: upstreams.demo.health_check.expect_status: empty status range '399-200'",
    ]
    assert problems(tmp_path, "    health_check: {interval: 0.01}\n") == [
        "config.yaml:10: upstreams.demo.health_check.interval: must be at least 0.1s"
    ]
    assert problems(tmp_path, "    health_check: {expect_status: 2xx}\n") == [
        "config.yaml:10: upstreams.demo.health_check.expect_status: invalid status range '2xx'"
        " (expected e.g. 200-399 or 204)"
    ]


def test_rejects_out_of_range_limits(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "    max_connections: 0\n")
    assert problem.startswith("config.yaml:10: upstreams.demo.max_connections: ")
    (problem,) = problems(tmp_path, "    passive_health: {consecutive_failures: 0}\n")
    assert problem.startswith("config.yaml:10: upstreams.demo.passive_health.")
    (problem,) = problems(tmp_path, "    write_timeout: 0\n")
    assert problem == "config.yaml:10: upstreams.demo.write_timeout: invalid duration 0:" + (
        " must be positive"
    )
