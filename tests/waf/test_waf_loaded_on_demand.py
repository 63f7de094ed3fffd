"""The WAF engine (its matchers and CRS's compiled rules: megabytes of every worker's memory)
is loaded only by a config that has a `waf` step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# Loads the config the way `outwork serve` does and says whether the engine got imported.
PROBE = """
import sys
from pathlib import Path
import outwork.proxy.server
from outwork.config.load import load_config
load_config(Path(sys.argv[1]))
print("outwork.waf.engine" in sys.modules)
"""


def engine_loaded(tmp_path: Path, policy: dict[str, Any]) -> bool:
    config = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["p"]}],
        "upstreams": {"backend": {"targets": ["http://127.0.0.1:9"]}},
        "policies": {"p": policy},
    }
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip() == "True"


def test_a_config_without_the_waf_leaves_the_engine_unloaded(tmp_path: Path) -> None:
    assert not engine_loaded(tmp_path, {"headers": {"remove": ["server"]}})


def test_a_waf_step_loads_it_with_the_config(tmp_path: Path) -> None:
    assert engine_loaded(tmp_path, {"waf": {"paranoia_level": 1}})
