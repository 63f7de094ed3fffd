"""redis-py (some 20 MiB of every worker's memory) is loaded only by a config that uses Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

# Loads the config the way `outwork serve` does and says whether redis-py got imported.
PROBE = """
import sys
from collections.abc import Mapping
from pathlib import Path
import outwork.proxy.server
from outwork.config.load import load_config
load_config(Path(sys.argv[1]))
print("redis" in sys.modules)
"""


def redis_loaded(tmp_path: Path, limit: Mapping[str, object], **extra: object) -> bool:
    config = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["p"]}],
        "upstreams": {"backend": {"targets": ["http://127.0.0.1:9"]}},
        "policies": {"p": {"rate_limit": [limit]}},
        **extra,
    }
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip() == "True"


def test_local_limits_leave_redis_unloaded(tmp_path: Path) -> None:
    assert not redis_loaded(tmp_path, {"key": "client_address", "rate": "10/s"})


def test_a_redis_limit_loads_it_with_the_config(tmp_path: Path) -> None:
    limit = {"key": "client_address", "rate": "10/s", "store": "redis"}
    assert redis_loaded(tmp_path, limit, redis={"url": "redis://127.0.0.1:9/0"})
