"""Whether a config loads a heavy module: what `outwork serve` imports, then the config loaded
as it loads it, in a fresh interpreter (the test's own has imported everything already)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PROBE = """
import sys
from pathlib import Path
import outwork.proxy.server
from outwork.config.load import load_config
load_config(Path(sys.argv[1]))
print(sys.argv[2] in sys.modules)
"""


def loaded_with(tmp_path: Path, module: str, policy: dict[str, Any], **extra: Any) -> bool:
    """Whether `module` is imported once a config with one route under `policy` is loaded."""
    config = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["p"]}],
        "upstreams": {"backend": {"targets": ["http://127.0.0.1:9"]}},
        "policies": {"p": policy},
        **extra,
    }
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), module],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip() == "True"
