"""Refusal reasons: one closed set, every member on /metrics at 0 from the start, every member
in the README, and every status or flood the code can refuse with mapped to a member."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from outwork.observe.refusals import Refusal, for_flood, for_status
from tests.conftest import Backend, Gateway, gateway_config

ROOT = Path(__file__).resolve().parents[2]


def _calls(path: Path, name: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def _int_constants(node: ast.AST) -> set[int]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is int}


def test_every_reason_is_on_metrics_at_zero_from_the_start(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(gateway_config(make_backend().url))
    reasons = {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(gw.scrape())
        if family.name == "outwork_requests_refused"
        for sample in family.samples
        if sample.name == "outwork_requests_refused_total"
    }
    assert reasons == {member.value: 0.0 for member in Refusal}


def test_the_readme_lists_every_reason_and_no_other() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Refusal reasons") :]
    section = section[: section.index("\n## ")]
    listed = re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)
    assert sorted(listed) == sorted(member.value for member in Refusal)
    assert len(listed) == len(set(listed))


def test_every_status_the_code_refuses_with_has_a_reason() -> None:
    statuses: set[int] = set()
    for path in sorted((ROOT / "outwork").rglob("*.py")):
        for call in _calls(path, "HTTPError"):
            statuses |= {s for s in _int_constants(call.args[0]) if 400 <= s < 600}
    assert {400, 405, 408, 413, 414, 417, 431, 501, 505} <= statuses
    for status in statuses:
        assert for_status(status).value == str(status)
    # The statuses HTTP/2 sets on a routed exchange itself (h2.py: H2Session._route).
    for status in (413, 414):
        assert for_status(status).value == str(status)


def test_every_h2_flood_has_a_reason() -> None:
    attacks = {
        call.args[0].value
        for call in _calls(ROOT / "outwork/front/h2_guard.py", "Flood")
        if isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
    }
    assert attacks == {
        "rapid_reset",
        "continuation_flood",
        "settings_flood",
        "ping_flood",
        "empty_frames_flood",
    }
    for attack in attacks:
        assert for_flood(attack).value == "h2_" + attack


@given(st.integers(min_value=-1000, max_value=100_000))
def test_for_status_is_the_status_or_refuses(status: int) -> None:
    try:
        reason = for_status(status)
    except KeyError:
        assert str(status) not in {member.value for member in Refusal}
    else:
        assert reason.value == str(status)


@given(st.text(max_size=40))
def test_for_flood_is_a_declared_h2_reason_or_refuses(attack: str) -> None:
    try:
        reason = for_flood(attack)
    except ValueError:
        assert "h2_" + attack not in {member.value for member in Refusal}
    else:
        assert reason.value == "h2_" + attack and reason in Refusal


def test_a_refusal_label_is_its_value() -> None:
    # What /metrics and the tests name: str() of a member is the old free-string label.
    for member in Refusal:
        assert str(member) == member.value == f"{member}"
    with pytest.raises(KeyError):
        for_status(404)  # no route is an answer, not a refusal
