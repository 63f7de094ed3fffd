"""The SecLang parser: every file of the vendored CRS v4.28 loads with nothing unknown; what
is unknown or malformed is an error naming its file and line; quoting as ModSecurity reads it."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from outwork.waf import seclang
from outwork.waf.engine import CRS_RULES, Waf
from outwork.waf.rules import Marker, Rule, Setting, UpdateTarget, Variable
from tests.fuzz_replay import Corpus


def rules_of(text: str) -> list[Rule]:
    return [d for d in seclang.parse(text, "t.conf") if isinstance(d, Rule)]


def test_every_crs_rule_file_loads() -> None:
    files = seclang.rule_files(CRS_RULES)
    assert len(files) == 27  # REQUEST-901..999 and RESPONSE-950..980
    rules = [d for f in files for d in seclang.parse_file(f) if isinstance(d, Rule)]
    ids = [r.id for r in rules]
    assert len(rules) > 600 and len(set(ids)) == len(ids)
    updates = [d for f in files for d in seclang.parse_file(f) if isinstance(d, UpdateTarget)]
    assert updates and updates[0].variables[0].exclude
    # ... and compiles: every operator built, every transformation known, every @rx compiled.
    waf = Waf.load()
    assert len(waf.rules) == len(rules) + 1  # and the setup SecAction built from the config


def test_crs_setup_example_parses() -> None:
    directives = seclang.parse_file(CRS_RULES.parent / "crs-setup.conf.example")
    assert any(isinstance(d, Setting) and d.name == "SecDefaultAction" for d in directives)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SecFoo On", "t.conf:1: unknown directive 'SecFoo'"),
        ('\n\nSecRule ARGS "@nope x" "id:1"', "t.conf:3: unknown operator '@nope'"),
        ('SecRule ARGS "x" "id:1,explode"', "t.conf:1: unknown action 'explode'"),
        ('SecRule ARGS "x" "id:1,t:rot13"', "t.conf:1: unknown transformation 'rot13'"),
        ('SecRule NOPE "x" "id:1"', "t.conf:1: unknown variable 'NOPE'"),
        ('SecRule ARGS "x" "id:1,ctl:fly=on"', "t.conf:1: unknown ctl option 'fly'"),
        ('SecRule ARGS "x" "phase:1"', "t.conf:1: a rule needs an id"),
        ('SecRule ARGS "x" "id:1,chain"', "t.conf:1: chain with no rule after it"),
        ('SecRule ARGS "x" "id:1,msg:\'open"', "t.conf:1: action msg: unterminated"),
        ('SecRule ARGS "x', 't.conf:1: unterminated "-quoted word'),
        ("SecRuleEngine Maybe", "t.conf:1: SecRuleEngine takes On, Off or DetectionOnly"),
    ],
)
def test_rejects_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(seclang.SeclangError) as raised:
        seclang.parse(text, "t.conf")
    assert str(raised.value).startswith(message)


def test_continuations_and_quoting_as_apache_reads_them() -> None:
    text = (
        'SecRule REQUEST_HEADERS:User-Agent "@rx ^a\\"b\\\\c$" \\\n'
        '    "id:7,\\\n'
        "    phase:1,block,t:none,t:lowercase,\\\n"
        "    msg:'it\\'s \\\"quoted\\\"',\\\n"
        "    setvar:'tx.score=+%{tx.critical_anomaly_score}'\"\n"
    )
    (rule,) = rules_of(text)
    assert rule.argument == '^a"b\\c$'
    assert rule.where.line == 1
    assert rule.first("msg") == 'it\'s "quoted"'
    assert rule.values("t") == ["none", "lowercase"]
    assert rule.values("setvar") == ["tx.score=+%{tx.critical_anomaly_score}"]
    assert rule.phase == 1 and rule.id == 7


def test_variable_list_syntax() -> None:
    (rule,) = rules_of(
        "SecRule ARGS|!ARGS:foo|&TX:x|REQUEST_HEADERS:/^x-(a|b)/|XML:/*|"
        'REQUEST_COOKIES:\'/^_ga/\' "!@rx y" "id:1"'
    )
    assert rule.variables == (
        Variable("ARGS"),
        Variable("ARGS", "foo", exclude=True),
        Variable("TX", "x", count=True),
        Variable("REQUEST_HEADERS", "^x-(a|b)", key_is_regex=True),
        Variable("XML", "/*"),
        Variable("REQUEST_COOKIES", "^_ga", key_is_regex=True),
    )
    assert rule.negated and rule.operator == "rx" and rule.argument == "y"


def test_operator_defaults_to_rx_and_chains_fold() -> None:
    text = (
        'SecMarker "BEGIN"\n'
        'SecRule ARGS "abc" "id:1,phase:2,pass,chain,skipAfter:BEGIN"\n'
        '  SecRule MATCHED_VAR "@pmFromFile x.data" "chain"\n'
        '    SecRule TX:a "@eq 1" "setvar:!tx.a"\n'
        'SecAction "id:2,phase:1,pass,nolog"\n'
    )
    directives = seclang.parse(text, "t.conf")
    assert isinstance(directives[0], Marker) and directives[0].name == "BEGIN"
    head = directives[1]
    assert isinstance(head, Rule) and head.operator == "rx" and head.argument == "abc"
    assert [r.operator for r in head.chained] == ["pmFromFile", "eq"]
    action = directives[2]
    assert isinstance(action, Rule) and action.operator == "unconditionalMatch"


NAMES = st.sampled_from(["ARGS", "ARGS_NAMES", "REQUEST_HEADERS", "TX", "REQUEST_COOKIES"])
KEYS = st.text(alphabet="abcxyz_-0123456789", min_size=1, max_size=8)
VARIABLES = st.builds(
    Variable,
    NAMES,
    st.none() | KEYS,
    st.just(False),
    st.booleans(),
    st.booleans(),
)
VALUES = st.text(alphabet=st.characters(blacklist_characters="\0\r\n"), max_size=30)


@given(st.lists(VARIABLES, min_size=1, max_size=5), VALUES, VALUES)
def test_written_rules_parse_back(variables: list[Variable], pattern: str, msg: str) -> None:
    """A rule written with the quoting ModSecurity reads gives back its parts."""
    # Apache's reader takes `\"` for an escaped quote even after an escaped backslash, so a
    # quoted word cannot end in a backslash (as in Apache).
    assume(not pattern.endswith("\\"))
    written = pattern.lstrip(seclang.BLANKS)
    negated = written.startswith("!")
    rest = written[1:] if negated else written
    assume(not rest.startswith("@"))  # an operator name: test_rejects_with_file_and_line
    quoted_msg = msg.replace("\\", "\\\\").replace("'", "\\'")
    actions = f"id:5,phase:2,pass,msg:'{quoted_msg}',tag:'a b'"
    # Apache's quoting: only \\ and \" are escapes inside a "-quoted word.
    pattern_word = pattern.replace("\\", "\\\\").replace('"', '\\"')
    actions_word = actions.replace("\\", "\\\\").replace('"', '\\"')
    text = 'SecRule {} "{}" "{}"\n'.format(
        "|".join(str(v) for v in variables), pattern_word, actions_word
    )
    (rule,) = rules_of(text)
    assert list(rule.variables) == variables
    assert (rule.negated, rule.operator, rule.argument) == (negated, "rx", rest)
    assert rule.first("msg") == msg
    assert rule.tags == ["a b"]


@given(st.binary(max_size=300))
def test_arbitrary_text_parses_or_fails_with_a_line(data: bytes) -> None:
    try:
        seclang.parse(data.decode("latin-1"), "x.conf")
    except seclang.SeclangError as error:
        assert str(error).startswith("x.conf:")


SECLANG = Corpus("seclang", "fuzz_seclang", max_bytes=256 * 1024, seeds=False)
test_corpus_input_replays = SECLANG.replay_test()
test_corpus_is_kept_and_small = SECLANG.size_test()
test_harness_imports_without_atheris = SECLANG.import_test()
