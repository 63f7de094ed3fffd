"""CRS v4.28's own regression tests (go-ftw YAML) through the engine, in process, at paranoia
levels 1 and 2, judged by status as go-ftw's cloud mode judges them: every case passes or is a
known difference with its reason (tests/data/crs/known-differences.json), so a regression in
any family shows. The pass rate per family is printed and recorded in that file.

The response families (RESPONSE-95x: data leakages, web shells, the outbound blocking) run all
four phases on the response CRS's test backend makes; as many of their requests carry the leak
they reflect (and score on their own), they are also judged as CRS's CI judges them, by the
rules that match with inbound blocking off (log mode): every expected rule, no unexpected one."""

from __future__ import annotations

import pytest

from tests.waf import ftw

FAMILIES = sorted(ftw.by_family())


def test_every_family_has_cases() -> None:
    assert len(ftw.cases()) > 4500
    assert {"920", "930", "932", "933", "941", "942", "944"} <= set(FAMILIES)
    assert any(not c.expect_block for c in ftw.cases())  # the no-alert cases are there too


@pytest.mark.parametrize("level", ftw.LEVELS)
@pytest.mark.parametrize("family", FAMILIES)
def test_family_passes_but_known_differences(level: int, family: str) -> None:
    known = ftw.load_known()[f"pl{level}"]
    cases = [c for c in ftw.by_family()[family] if ftw.applicable(c, level)]
    failed = {c.id for c in cases if ftw.blocked(c, level) != c.expect_block}
    unexpected = sorted(failed - set(known))
    assert not unexpected, {
        case_id: ftw.reason(next(c for c in cases if c.id == case_id), level)
        for case_id in unexpected[:20]
    }
    passed = len(cases) - len(failed)
    print(f"PL{level} {family}: {passed}/{len(cases)} pass")


def test_known_differences_each_have_a_reason() -> None:
    known = ftw.load_known()
    ids = {c.id for c in ftw.cases()}
    for level in ftw.LEVELS:
        for case_id, why in known[f"pl{level}"].items():
            assert case_id in ids and why.split(":")[0] in (
                "score",
                "miss",
                "false positive",
                "other rules",
                "server",
            ), (case_id, why)


RESPONSE_FAMILIES = [f for f in FAMILIES if f >= "950"]


def test_response_families_are_there() -> None:
    assert {"950", "951", "952", "953", "954", "955", "956", "959"} <= set(RESPONSE_FAMILIES)


@pytest.mark.parametrize("level", ftw.LEVELS)
@pytest.mark.parametrize("family", RESPONSE_FAMILIES)
def test_response_rules_match_as_crs_expects(level: int, family: str) -> None:
    cases = [c for c in ftw.by_family()[family] if ftw.applicable(c, level)]
    assert cases
    wrong = {}
    for case in cases:
        ids = ftw.matched_ids(case, level)
        missed = set(case.expect_ids) - ids
        unexpected = set(case.no_expect_ids) & ids
        if missed or unexpected:
            wrong[case.id] = {"missed": sorted(missed), "unexpected": sorted(unexpected)}
    assert not wrong, wrong
    print(f"PL{level} {family}: {len(cases)}/{len(cases)} match as CRS expects")
