"""Folding at load (fold.py): the setup rules and the paranoia-level checks, whose outcome is
the same for every request, are worked out once; a request gets the same verdict as when every
rule is walked, also when a rule changes the TX value a check reads or a ctl removes a check."""

from __future__ import annotations

from pathlib import Path

import pytest

from outwork.waf.engine import Setup, Waf
from tests.waf.test_engine import matched, request, rules_dir, run

RULES = """
SecAction "id:10,phase:1,pass,nolog,setvar:tx.level=1,setvar:tx.score=0"
SecRule &TX:limit "@eq 0" "id:11,phase:1,pass,nolog,setvar:tx.limit=5"
SecRule ARGS:raise "@streq yes" "id:20,phase:1,pass,nolog,setvar:tx.raised=2"
SecRule ARGS:unskip "@streq yes" "id:21,phase:1,pass,nolog,ctl:ruleRemoveById=31"
SecRule ARGS:untarget "@streq yes" "id:22,phase:1,pass,nolog,ctl:ruleRemoveTargetById=31;TX:level"
SecRule ARGS:unskip2 "@streq yes" "id:24,phase:1,pass,nolog,ctl:ruleRemoveById=60"
SecRule ARGS:untarget2 "@streq yes" \
    "id:25,phase:1,pass,nolog,ctl:ruleRemoveTargetById=60;TX:limit"
SecRule TX:raised "@eq 2" "id:23,phase:1,pass,nolog,setvar:tx.level=2"
SecRule TX:limit "@gt 10" "id:29,phase:1,pass,nolog,skipAfter:END-LEVEL"
SecRule TX:level "@lt 1" "id:30,phase:1,pass,nolog,skipAfter:END-LEVEL"
SecRule TX:level "@lt 2" "id:31,phase:1,pass,nolog,skipAfter:END-LEVEL"
SecRule ARGS "@streq attack" "id:40,phase:1,block,setvar:tx.score=+%{tx.limit}"
SecMarker END-LEVEL
SecRule TX:score "@ge %{tx.limit}" "id:50,phase:1,deny,status:403"
SecRule ARGS:unskip3 "@streq yes" "id:59,phase:2,pass,nolog,ctl:ruleRemoveById=60"
SecRule TX:limit "@eq 5" "id:60,phase:2,pass,nolog,skipAfter:END-TWO"
SecRule ARGS "@streq attack2" "id:61,phase:2,deny,status:403"
SecMarker END-TWO
SecRule ARGS "@streq attack3" "id:62,phase:2,deny,status:403"
"""


def two(tmp_path: Path) -> tuple[Waf, Waf]:
    """The rules folded, and the same rules walked in full."""
    folder = rules_dir(tmp_path, RULES)
    plain = Waf.load(folder)
    plain.prefix, plain.folds, plain.folded_ids = None, {}, frozenset()
    return Waf.load(folder), plain


@pytest.mark.parametrize(
    ("query", "blocked"),
    [
        (b"x=attack", False),  # level 1: rule 40 is skipped
        (b"x=attack&raise=yes", True),  # a rule sets tx.level=2: the check does not skip
        (b"x=attack&unskip=yes", True),  # the check is removed for this request
        (b"x=attack&untarget=yes", True),  # the check has nothing to read
        (b"x=benign&unskip=yes", False),
        (b"x=attack2", False),  # tx.limit is 5, set at load: rule 60 always skips
        (b"x=attack3", True),
        # A folded rule removed (before its phase, or in it), or its TX target: the full walk.
        (b"x=attack2&unskip2=yes", True),
        (b"x=attack2&untarget2=yes", True),
        (b"x=attack2&unskip3=yes", True),
    ],
)
def test_folded_rules_decide_as_the_full_walk(tmp_path: Path, query: bytes, blocked: bool) -> None:
    folded, plain = two(tmp_path)
    fast, full = run(folded, request(b"/?" + query)), run(plain, request(b"/?" + query))
    assert (fast.would_interrupt is not None) == blocked
    assert (full.would_interrupt is not None) == blocked
    assert matched(fast) == matched(full)
    assert fast.vars.tx == full.vars.tx


def test_setup_rules_and_checks_on_set_values_are_folded(tmp_path: Path) -> None:
    folded, _ = two(tmp_path)
    assert folded.prefix is not None and folded.prefix.rules == 3  # 900990, 10 and 11
    # tx.limit is set once and for all: 29 never matches, 60 always skips.
    assert {29, 60} <= folded.folded_ids
    # tx.level may change (rule 23), tx.score too (rule 40): their readers run.
    assert not {30, 31, 50} & folded.folded_ids


def test_crs_paranoia_level_checks_are_folded() -> None:
    waf = Waf.load(setup=Setup(paranoia_level=1))
    plain = Waf.load(setup=Setup(paranoia_level=1))
    plain.prefix, plain.folds, plain.folded_ids = None, {}, frozenset()
    benign = request(b"/api/orders?page=2&sort=date")
    fast, full = run(waf, benign), run(plain, benign)
    assert [m.id for m in fast.matches] == [m.id for m in full.matches]
    # The checks of each rule file (and the PL2+ rules they skip) are not walked.
    assert fast.stats.rules_reached < full.stats.rules_reached * 0.7
    sqli = request(b"/search", b"q=1' or '1'='1", b"application/x-www-form-urlencoded")
    fast, full = run(waf, sqli), run(plain, sqli)
    assert fast.would_interrupt is not None and matched(fast) == matched(full)
    assert fast.anomaly_score == full.anomaly_score
