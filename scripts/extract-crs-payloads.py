#!/usr/bin/env python3
"""Extract the distinct request strings of CRS's regression tests (go-ftw YAML) into
tests/data/waf/crs-payloads.txt: URIs, bodies and header values, one a line with
backslash escapes (so a payload with a newline or a NUL fits on its line). The WAF's
pattern-scan property test replays them (tests/waf/test_patterns.py).

    scripts/extract-crs-payloads.py REGRESSION_TESTS_DIR [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [item for item in node if isinstance(item, str)]
    return []


def payloads(tests_dir: Path) -> list[str]:
    found: set[str] = set()
    for path in sorted(tests_dir.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text()) or {}
        for test in document.get("tests") or []:
            for stage in test.get("stages") or []:
                request = (stage or {}).get("input") or {}
                for key in ("uri", "data"):
                    found.update(strings(request.get(key)))
                headers = request.get("headers")
                if isinstance(headers, dict):
                    for value in headers.values():
                        found.update(strings(value))
    return sorted(found)


def main() -> None:
    tests_dir = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("tests/data/waf/crs-payloads.txt")
    lines = [
        text.encode("utf-8", "surrogateescape").decode("latin-1") for text in payloads(tests_dir)
    ]
    escaped = [line.encode("unicode_escape").decode("ascii") for line in lines]
    out.write_text("\n".join(escaped) + "\n")


if __name__ == "__main__":
    main()
