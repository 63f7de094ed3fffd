"""The engine's shortcuts (the per-collection @rx scan, the @pm pass over all values, the
fast paths of pipelines, values kept across requests, the setup and paranoia-level checks
folded at load) change what a request costs, never what CRS decides: the same requests
through CRS with and without them match the same rules."""

from __future__ import annotations

import json
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.waf.engine import Setup, Waf
from outwork.waf.request import WafRequest

# Pieces of attacks and of ordinary values, so that random values come near CRS's patterns.
PIECES = [
    "select",
    "union",
    " ",
    "'",
    '"',
    "<script>",
    "../",
    "%2e",
    "/etc/passwd",
    "()",
    "{",
    "$",
    ";",
    "alert(1)",
    "json",
    "a",
    "1",
    "=",
    "&",
    "\\",
    "eval",
    "+",
    "%00",
    "<",
    "on",
    "cmd",
    "|",
    "`",
    "base64",
    "Zm9v",
    "__proto__",
    "or 1=1",
    "--",
    "/*",
    "\t",
    "É",
    "%u0041",
    "&#x3c;",
]
VALUES = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)


def without_shortcuts(waf: Waf) -> Waf:
    """The same compiled rules, every rule evaluated on every value of its targets, and
    every rule walked (no setup or paranoia-level check folded at load)."""
    waf.prefix, waf.folds, waf.folded_ids = None, {}, frozenset()
    for head in waf.rules:
        for rule in (head, *head.chained):
            rule.scan = None
            rule.prefilter = None
            rule.phrases = None
    return waf


@pytest.fixture(scope="module")
def engines() -> tuple[Waf, Waf]:
    setup = Setup(paranoia_level=2)
    return Waf.load(setup=setup), without_shortcuts(Waf.load(setup=setup))


def verdict(waf: Waf, request: WafRequest) -> list[int]:
    transaction = waf.transaction(request)
    transaction.run_phase(1)
    transaction.run_phase(2)
    return [m.id for m in transaction.matches]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES, VALUES, VALUES)
def test_shortcuts_match_the_same_rules(
    engines: tuple[Waf, Waf], query: str, field: str, agent: str
) -> None:
    fast, plain = engines
    body = json.dumps({"name": field, field[:8] or "k": [1, query]}).encode()
    target = b"/api/items?q=" + quote_from_bytes(query.encode(), safe="%&=+").encode() + b"&n=2"
    headers = [
        (b"Host", b"localhost"),
        (b"User-Agent", agent.encode()),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(body)).encode()),
    ]
    request = WafRequest(b"POST", target, b"HTTP/1.1", headers, "192.0.2.1", 4000, body)
    assert verdict(fast, request) == verdict(plain, request)


def scanned_request(query: str, field: str, agent: str, cookie: str) -> WafRequest:
    body = json.dumps({"name": field, field[:8] or "k": [1, query]}).encode()
    target = b"/api/items?q=" + quote_from_bytes(query.encode(), safe="%&=+").encode() + b"&n=2"
    headers = [
        (b"Host", b"localhost"),
        (b"User-Agent", agent.encode()),
        (b"Cookie", b"s=" + quote_from_bytes(cookie.encode(), safe="%&=+").encode()),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(body)).encode()),
    ]
    return WafRequest(b"POST", target, b"HTTP/1.1", headers, "192.0.2.1", 4000, body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES, VALUES, VALUES, VALUES)
def test_the_scan_rules_a_rule_out_as_the_union_of_its_values_scans_does(
    engines: tuple[Waf, Waf], query: str, field: str, agent: str, cookie: str
) -> None:
    """`_may_hit` looks in one mask after another and stops at the first holding the rule's
    pattern: its answer is the union's, over the rule's values as they are, lowercased and
    through each pipeline it scans; and a rule whose regex matches one of those values is
    never ruled out."""
    waf, _ = engines
    transaction = waf.transaction(scanned_request(query, field, agent, cookie))
    transaction.run_phase(1)
    transaction.run_phase(2)
    for head in waf.rules:
        for rule in (head, *head.chained):
            if rule.scan is None or head.phase not in (1, 2):
                continue
            assert rule.prefilter is not None
            group, bit = rule.prefilter
            values = [
                value
                for variable in rule.scan
                for _, value in transaction.vars.select(waf.scan_variables[variable])
            ]
            union = 0
            through = [
                step(value) if step else value for value in values for step in rule.step_pipes
            ]
            for value in values + [value.lower() for value in values] + through:
                union |= transaction._candidates_of(group, value)
            may_hit = transaction._may_hit(rule)
            assert may_hit == bool(union & bit), rule.id
            if not may_hit:
                assert not any(rule.operator.match(value, transaction.expand) for value in through)
