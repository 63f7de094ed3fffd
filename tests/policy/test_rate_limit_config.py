"""The `rate_limit`, `redis:` and `ban:` config: compiled, and every mistake at its line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from outwork.config.config import Address, BanConfig, GatewayConfig, RedisConfig
from outwork.config.load import load_config
from outwork.config.schema import BAN_WEIGHTS
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
    assert config.ban == BanConfig(5, 60.0, 600.0, loopback, BAN_WEIGHTS)


def test_ban_weights_change_single_entries(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE + "policies: {p: {}}\nban: {weights: {policy.rate_limited: 1, waf.blocked: 5}}\n"
    )
    config = load_config(path)
    assert config.ban is not None and config.warnings == ()
    weights = config.ban.weights
    assert (weights["policy.rate_limited"], weights["waf.blocked"]) == (1, 5)
    assert weights["h2.rapid_reset"] == 3 and weights["policy.filter_error"] == 0  # kept
    assert "policy.unauthenticated" not in weights  # weighs 1
    assert config.ban.ipv6_prefix == 64


def test_ban_ipv6_prefix(tmp_path: Path) -> None:
    _, config = _load(tmp_path, "policies: {p: {}}\nban: {ipv6_prefix: 56}\n")
    assert isinstance(config, GatewayConfig) and config.ban is not None
    assert config.ban.ipv6_prefix == 56
    assert _problems(tmp_path, "policies: {p: {}}\nban: {ipv6_prefix: 40}\n") == [
        "config.yaml:5: ban.ipv6_prefix: expected `int` >= 48"
    ]


def test_ban_weights_mistakes(tmp_path: Path) -> None:
    found = _problems(tmp_path, "policies: {p: {}}\nban: {weights: {waf.blocked: -1, Bad: 1}}\n")
    assert found == [
        "config.yaml:5: ban.weights.waf.blocked: expected `int` >= 0",
        "config.yaml:5: ban.weights.Bad: invalid name 'Bad': expected `str` matching regex"
        " '^[a-z0-9_]+(\\\\.[a-z0-9_]+)+$'",
    ]
    found = _problems(tmp_path, "policies: {p: {}}\nban: {weights: {tls.heartbleed_probe: 1}}\n")
    assert found == [
        "config.yaml:5: ban.weights.tls.heartbleed_probe: tls.heartbleed_probe is not weighed:"
        " it bans at once"
    ]
    path = tmp_path / "config.yaml"
    path.write_text(BASE + "policies: {p: {}}\nban: {weights: {policy.rate_limitted: 1}}\n")
    assert load_config(path).warnings == (
        f"{path}:5: ban.weights.policy.rate_limitted: warning: policy.rate_limitted is not an"
        " event the gateway writes (see README, Security events); did you mean"
        ' "policy.rate_limited"?',
    )


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
