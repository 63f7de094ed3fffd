#!/usr/bin/env python3
"""Extract every operator and transformation of a CRS `rules/` folder into
tests/data/waf/crs-operators.json, the table tests/waf/test_operators.py and
tests/waf/test_patterns.py run over (the tests must not read files outside the repository).

    scripts/extract-crs-operators.py RULES_DIR [OUT]

Only what the operator tests need: rule id, operator (with its `!` negation), its argument
as written, and the transformations (`t:`) of the rule. The WAF's own SecLang parser is
the engine's (outwork/waf/); this is a small reader of the same file layout, kept
independent so the operator tests do not depend on the engine.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def logical_lines(text: str) -> list[str]:
    """SecLang joins a line ending in a backslash with the next one."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.endswith("\\"):
            current += raw[:-1]
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    return lines


def words(line: str) -> list[str]:
    """Split a directive into words; a double-quoted word keeps its inner backslashes
    except the one before a quote (SecLang's only escape in quoted arguments)."""
    out: list[str] = []
    i = 0
    while i < len(line):
        if line[i].isspace():
            i += 1
            continue
        if line[i] == '"':
            i += 1
            buf = []
            while i < len(line) and line[i] != '"':
                if line[i] == "\\" and i + 1 < len(line) and line[i + 1] == '"':
                    buf.append('"')
                    i += 2
                    continue
                buf.append(line[i])
                i += 1
            out.append("".join(buf))
            i += 1
            continue
        j = i
        while j < len(line) and not line[j].isspace():
            j += 1
        out.append(line[i:j])
        i = j
    return out


ID = re.compile(r"(?:^|,)\s*id\s*:\s*'?(\d+)")
TRANSFORM = re.compile(r"(?:^|,)\s*t\s*:\s*'?([A-Za-z0-9]+)")


def extract(rules_dir: Path) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for path in sorted(rules_dir.glob("*.conf")):
        last_id = ""
        for line in logical_lines(path.read_text()):
            parts = words(line)
            if not parts or parts[0] != "SecRule" or len(parts) < 3:
                continue
            operator = parts[2]
            actions = parts[3] if len(parts) > 3 else ""
            match = ID.search(actions)
            rule_id = match.group(1) if match else last_id  # a chained rule has no id
            last_id = rule_id
            negated = operator.startswith("!")
            operator = operator[1:] if negated else operator
            if operator.startswith("@"):
                name, _, argument = operator[1:].partition(" ")
            else:  # SecLang's default operator
                name, argument = "rx", operator
            found.append(
                {
                    "file": path.name,
                    "id": rule_id,
                    "negated": negated,
                    "operator": name,
                    "argument": argument,
                    "transforms": TRANSFORM.findall(actions),
                }
            )
    return found


def main() -> None:
    rules_dir = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("tests/data/waf/crs-operators.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(extract(rules_dir), indent=1) + "\n")


if __name__ == "__main__":
    main()
