"""The `rate_limit`, `redis:` and `ban:` config: compiled, and every mistake at its line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from outwork.config.config import Address, BanConfig, RedisConfig
from outwork.config.load import load_config
from outwork.config.source import ConfigError
from outwork.filters.rate_limit import RateLimitFilter

BASE = """\
listeners: [{name: public, bind: "127.0.0.1:0"}]
routes: [{match: {path_prefix: /}, upstream: demo, policies: [p]}]
upstreams: {demo: {targets: ["http://127.0.0.1:9000"]}}
"""


def _load(tmp_path: Path, text: str) -> tuple[Path, object]:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + text)
    return path, load_config(path)


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.format().replace(str(path), "config.yaml") for p in info.value.problems]


def test_limits_redis_and_ban_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE
        + """\
policies:
  p:
    rate_limit:
      - {key: client_address, rate: 10/s, burst: 20}
      - {key: api_key, rate: 1000/m, store: redis, on_store_error: deny}
redis: {url: "redis://127.0.0.1:6379/0", password: "env:REDIS_PASSWORD", timeout: 0.2}
ban: {}
"""
    )
    config = load_config(path)
    (step,) = config.routes[0].filters
    assert isinstance(step, RateLimitFilter)
    assert [(lim.key, str(lim.rate), lim.burst) for lim in step.local] == [
        ("client_address", "10/s", 20)
    ]
    assert [(lim.key, lim.burst, lim.deny_on_store_error) for lim in step.remote] == [
        ("api_key", 1000, True)
    ]
    assert config.redis == RedisConfig(
        url="redis://127.0.0.1:6379/0", password=b"s3cret", timeout=0.2
    )
    loopback = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert config.ban == BanConfig(5, 60.0, 600.0, loopback)


def test_sentinel_and_cluster_sections(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE + 'policies: {p: {}}\nredis: {cluster: ["127.0.0.1:7000", "[::1]:7001"]}\n'
    )
    config = load_config(path)
    assert config.redis is not None
    assert config.redis.cluster == (Address("127.0.0.1", 7000), Address("::1", 7001))
    path.write_text(BASE + "policies: {p: {}}\nredis: {sentinels: [a:26379], service: main}\n")
    config = load_config(path)
    assert config.redis is not None and config.redis.service == "main"


def test_every_mistake_at_its_line(tmp_path: Path) -> None:
    got = _problems(
        tmp_path,
        """\
policies:
  p:
    rate_limit:
      - {key: client_address, rate: 10/w}
  q:
    rate_limit:
      - {key: api_key, rate: 10/s, store: redis}
ban: {duration: forever, exempt: [10.0.0.1/8]}
redis: {url: "http://x", cluster: ["a:1"]}
""",
    )
    # A redis: section with mistakes still counts as one (no "needs the redis: section").
    assert got == [
        "config.yaml:7: policies.p.rate_limit[0]: invalid rate '10/w' (expected N/s, N/m, N/h"
        " or N/d, e.g. 10/s)",
        "config.yaml:11: ban.duration: invalid duration 'forever' (expected e.g. 90s, 30m, 12h,"
        " 7d)",
        "config.yaml:11: ban.exempt[0]: not an IP address or CIDR: 10.0.0.1/8 has host bits set",
        "config.yaml:12: redis: give exactly one of url, sentinels (with service) or cluster",
        "config.yaml:12: redis.url: 'http://x' is not a redis:// or rediss:// URL",
    ]
    assert _problems(
        tmp_path, "policies: {p: {rate_limit: [{key: api_key, rate: 1/s, store: redis}]}}\n"
    ) == [
        "config.yaml:4: policies.p.rate_limit: a limit with store: redis needs the redis: section"
    ]
    assert "config.yaml:4: ban.after.count: expected `int` >= 1" in _problems(
        tmp_path, "ban: {after: {count: 0}}\n"
    )
