"""CRS's regression corpus through outwork's engine against ModSecurity 2.9 with the same rules
(tests/data/crs/modsecurity-verdicts.json, made by `python -m tests.waf.modsec_verdicts`), at
paranoia levels 1 and 2: the same verdict (blocked or not) and the same request rules matched,
case by case, or a difference listed with its reason in known-differences.json
(`modsecurity_pl1`, `modsecurity_pl2`). A sample of the corpus goes through Apache +
ModSecurity live, so the recorded verdicts are shown to still be ModSecurity's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_file, require_tool
from tests.waf import ftw
from tests.waf import modsec_verdicts as oracle

FAMILIES = sorted(
    f for f, members in ftw.by_family().items() if not ftw.response_family(members[0])
)
SAMPLE_EVERY = 12  # about 270 cases at PL1 and 360 at PL2, spread over every family


def known(level: int) -> dict[str, str]:
    data = json.loads(ftw.KNOWN.read_text(encoding="utf-8"))
    differences: dict[str, str] = data[f"modsecurity_pl{level}"]
    return differences


def test_verdicts_cover_every_applicable_case() -> None:
    recorded = oracle.load()
    for level in ftw.LEVELS:
        wanted = {c.id for c in oracle.oracle_cases(level)}
        assert set(recorded[f"pl{level}"]) == wanted
    # ModSecurity blocks most attacks and lets CRS's no-alert cases through.
    assert sum(v.blocked for v in recorded["pl1"].values()) > 2300


@pytest.mark.parametrize("level", ftw.LEVELS)
@pytest.mark.parametrize("family", FAMILIES)
def test_family_agrees_with_modsecurity(level: int, family: str) -> None:
    theirs = oracle.load()[f"pl{level}"]
    listed = known(level)
    cases = [c for c in ftw.by_family()[family] if ftw.applicable(c, level)]
    differing = {
        c.id: why for c in cases if (why := oracle.difference(c, level, theirs[c.id])) is not None
    }
    unlisted = {case_id: why for case_id, why in differing.items() if case_id not in listed}
    assert not unlisted
    agree = sum(1 for c in cases if oracle.outwork_verdict(c, level)[0] == theirs[c.id].blocked)
    print(f"PL{level} {family}: outwork = ModSecurity on {agree}/{len(cases)}")


def test_differences_are_still_differences_with_a_reason() -> None:
    recorded = oracle.load()
    by_id = {c.id: c for c in ftw.cases()}
    for level in ftw.LEVELS:
        for case_id, why in known(level).items():
            assert why.split(":")[0] in ("server", "engine"), (case_id, why)
            # A fixed difference leaves the list: it would hide a regression otherwise.
            difference = oracle.difference(by_id[case_id], level, recorded[f"pl{level}"][case_id])
            assert difference is not None, case_id


def test_no_engine_difference_is_left() -> None:
    """Each difference left is Apache's doing (a request it changes or refuses before
    ModSecurity sees it), none is the rules engine's."""
    for level in ftw.LEVELS:
        assert all(why.startswith("server:") for why in known(level).values())
        assert len(known(level)) <= 4


@pytest.fixture(scope="module")
def apache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    path = require_tool("apache2")
    require_file(oracle.MODULES / "mod_security2.so", "libapache2-mod-security2")
    require_file(oracle.UNICODE_MAPPING, "libapache2-mod-security2")
    yield path, tmp_path_factory.mktemp("modsecurity-verdicts")


@pytest.mark.parametrize("level", ftw.LEVELS)
def test_recorded_verdicts_are_modsecuritys(apache: tuple[str, Path], level: int) -> None:
    path, root = apache
    sample = [
        c
        for members in ftw.by_family().values()
        for c in members[::SAMPLE_EVERY]
        if ftw.applicable(c, level) and not oracle.response_case(c)
    ]
    recorded = oracle.load()[f"pl{level}"]
    with oracle.running(root / f"pl{level}", oracle.level_setup(level), path) as server:
        live = oracle.verdicts(server, sample)
    assert len(sample) > 200
    changed = {c.id: (recorded[c.id], live[c.id]) for c in sample if live[c.id] != recorded[c.id]}
    assert not changed
