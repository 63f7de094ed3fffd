"""CRS v4.28 as the WAF's operator tests see it: its operators (tests/data/waf/
crs-operators.json) and the requests of its regression tests (crs-payloads.txt), both
extracted by scripts/ from the CRS release (Apache-2.0, tests/data/waf/CRS-LICENSE)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "waf"
ROOT = Path(__file__).resolve().parents[2]
# The CRS rules the product ships (vendored by the WAF engine's work); the data files of
# @pmFromFile live there.
VENDORED_RULES = ROOT / "outwork" / "waf" / "crs" / "rules"


@cache
def operators() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((DATA / "crs-operators.json").read_text())
    return entries


@cache
def rx_patterns() -> list[str]:
    """The distinct @rx patterns, in a fixed order."""
    return sorted({entry["argument"] for entry in operators() if entry["operator"] == "rx"})


@cache
def payloads() -> list[bytes]:
    text = (DATA / "crs-payloads.txt").read_text()
    return [
        line.encode("ascii").decode("unicode_escape").encode("latin-1")
        for line in text.split("\n")[:-1]
    ]
