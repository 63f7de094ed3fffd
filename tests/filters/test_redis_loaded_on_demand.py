"""redis-py (some 20 MiB of every worker's memory) is loaded only by a config that uses Redis."""

from __future__ import annotations

from pathlib import Path

from tests.module_probe import loaded_with


def test_local_limits_leave_redis_unloaded(tmp_path: Path) -> None:
    limit = {"key": "client_address", "rate": "10/s"}
    assert not loaded_with(tmp_path, "redis", {"rate_limit": [limit]})


def test_a_redis_limit_loads_it_with_the_config(tmp_path: Path) -> None:
    limit = {"key": "client_address", "rate": "10/s", "store": "redis"}
    redis = {"url": "redis://127.0.0.1:9/0"}
    assert loaded_with(tmp_path, "redis", {"rate_limit": [limit]}, redis=redis)
