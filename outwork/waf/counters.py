"""`outwork_waf_matches_total{family=...}`: rules matched, by CRS rule family (942 for SQL
injection, ...), in this process. Every family of the vendored CRS is declared at 0 from the
start, so that an alert can watch a family before it ever fires."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_CRS_RULES = Path(__file__).parent / "crs" / "rules"
FAMILIES = tuple(
    sorted(
        {m.group(1) for p in _CRS_RULES.glob("*.conf") if (m := re.search(r"-(\d{3})-", p.name))}
    )
)
MATCHES: Counter[str] = Counter(dict.fromkeys((*FAMILIES, "other"), 0))


def family(rule_id: int) -> str:
    return str(rule_id // 1000) if 900000 <= rule_id < 1000000 else "other"
