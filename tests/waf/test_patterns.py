"""@rx matching: PCRE's meaning kept, the multi-pattern scan never misses, no pattern
skipped (each is either scanned or always a candidate; each runs in a named engine)."""

from __future__ import annotations

import random
from functools import cache

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.waf.literals import required_literals
from outwork.waf.patterns import CompiledRegex, PatternSet, compile_regex
from outwork.waf.pcre import translate
from outwork.waf.transforms import pipeline
from tests.waf import crs_data

# Transformation lists CRS applies before its regexes (the common ones).
# (2 ms per value for the 295 exact matches: three lists over the 4,491 payloads.)
PIPELINES = (
    (),
    ("utf8toUnicode", "urlDecodeUni", "htmlEntityDecode", "jsDecode", "cssDecode", "removeNulls"),
    ("urlDecodeUni", "cmdLine"),
)


@cache
def crs_set() -> PatternSet:
    return PatternSet(crs_data.rx_patterns())


@cache
def crs_regexes() -> tuple[CompiledRegex, ...]:
    return tuple(compile_regex(pattern) for pattern in crs_data.rx_patterns())


def exact_matches(value: bytes) -> set[int]:
    return {index for index, rx in enumerate(crs_regexes()) if rx.search(value) is not None}


def test_every_crs_pattern_is_scanned_none_skipped() -> None:
    """Every CRS pattern is in the RE2 Set; all but 22 also have literals for the
    prefilter (the rest are candidates for every value on that path)."""
    patterns = crs_set()
    assert len(crs_data.rx_patterns()) == 295
    engines = [patterns.engine_of(index) for index in range(len(crs_data.rx_patterns()))]
    assert set(engines) == {"re2-set+literals", "re2-set"}
    assert engines.count("re2-set") == len(patterns.always) == 22


def test_crs_patterns_that_need_the_backtracking_fallback() -> None:
    """Every CRS pattern runs in RE2 (linear time) but these, which run in `regex` with a
    time limit: RE2 folds Latin-1 letters under (?i), PCRE's C locale only ASCII."""
    fallback = {
        entry["id"]
        for entry in crs_data.operators()
        if entry["operator"] == "rx" and compile_regex(entry["argument"]).engine == "regex"
    }
    assert fallback == {"934120"}
    reasons = {rx.why_fallback for rx in crs_regexes() if rx.engine == "regex"}
    assert reasons == {"case-insensitive with non-ASCII bytes"}


@pytest.mark.parametrize("names", PIPELINES, ids=lambda names: "+".join(names) or "raw")
def test_no_miss_over_crs_regression_payloads(names: tuple[str, ...]) -> None:
    """For every request string of CRS's regression tests, through one of CRS's usual
    transformation lists: every pattern that matches is a candidate."""
    patterns = crs_set()
    transform = pipeline(names)
    checked = 0
    for payload in crs_data.payloads():
        value = transform(payload)
        exact = exact_matches(value)
        missed = exact - patterns.set_candidates(value)
        missed |= exact - patterns.prefilter_candidates(value)
        assert not missed, (value, [crs_data.rx_patterns()[index] for index in missed])
        checked += 1
    assert checked == len(crs_data.payloads()) == 4491


def test_set_scan_is_exact_for_re2_patterns() -> None:
    """RE2's Set reports exactly what RE2 matches one by one (no candidate to weed out);
    the literal prefilter reports more."""
    patterns = crs_set()
    payload = b"1' UNION SELECT password FROM users-- <script>alert(1)</script> ../../etc/passwd"
    assert patterns.set_candidates(payload) == exact_matches(payload)
    assert len(exact_matches(payload)) > 10
    assert patterns.prefilter_candidates(payload) > exact_matches(payload)


def test_slow_set_scans_move_values_to_the_prefilter() -> None:
    """Symbol-dense values make the RE2 Set's DFA build a state for nearly every byte: after
    three slow ones the next values take the prefilter, with the same complete answers."""
    patterns = PatternSet(crs_data.rx_patterns())
    chooser = random.Random(5)
    dense = [
        bytes(chooser.choice(b"abcdefghij klmnop=&%/.'\"<>(){}:,") for _ in range(1024))
        for _ in range(40)
    ]
    for value in dense:
        assert exact_matches(value) <= patterns.candidates(value)
    assert patterns.slow_scans >= 3
    assert patterns._prefilter_left > 0


def test_long_values_take_the_prefilter() -> None:
    patterns = crs_set()
    value = b"a=1&b=<script>alert(1)</script>" + b"x" * 2000
    assert patterns.candidates(value) == patterns.prefilter_candidates(value)
    assert exact_matches(value) <= patterns.candidates(value)


@cache
def crs_literals() -> tuple[frozenset[bytes] | None, ...]:
    return tuple(required_literals(pattern) for pattern in crs_set().patterns)


def literal_candidates(patterns: PatternSet, value: bytes) -> set[int]:
    """The literal prefilter's answer (of `crs_set()`), found the plain way: the patterns
    that require no literal, and those with a required literal in the lowercased value."""
    lowered = value.lower()
    found = set(patterns.always)
    for index, literals in enumerate(crs_literals()):
        if literals is not None and any(literal in lowered for literal in literals):
            found.add(index)
    return found


def test_the_literal_prefilter_on_long_random_and_dense_values() -> None:
    patterns = crs_set()
    for value in (random.Random(7).randbytes(65536), bytes(range(256)) * 64):
        assert patterns.prefilter_candidates(value) == literal_candidates(patterns, value)


# Generated values: CRS-looking fragments, bytes regexes care about, and random bytes.
FRAGMENTS = st.sampled_from(
    [
        b"select", b"union", b"<script", b"javascript:", b"onerror=", b"../", b"/etc/passwd",
        b"$(", b"`", b";", b"|", b"&&", b"'", b'"', b"=", b"(", b")", b"{", b"}", b"${jndi:",
        b"<?php", b"%00", b"\x00", b"\n", b"\r\n", b"\t", b"\x0b", b" ", b"0x", b"--", b"/*",
        b"eval(", b"cmd.exe", b"powershell", b"SLEEP(", b"OR 1=1", b"\xe2\x80\x98", b"\xc2\xb4",
        b"\xbc", b"\xff", b"A", b"z", b"9", b"_", b"@@version", b"concat(", b"<!--", b"http://",
    ]
)  # fmt: skip
GENERATED = st.one_of(
    st.lists(FRAGMENTS | st.binary(max_size=4), max_size=24).map(b"".join),
    st.sampled_from(range(4491)).map(lambda index: crs_data.payloads()[index]),
    st.binary(max_size=200),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=GENERATED)
def test_no_miss_on_generated_values(value: bytes) -> None:
    patterns = crs_set()
    exact = exact_matches(value)
    assert exact <= patterns.set_candidates(value)
    assert exact <= patterns.prefilter_candidates(value)
    assert patterns.prefilter_candidates(value) == literal_candidates(patterns, value)


@settings(max_examples=40, deadline=None)
@given(value=GENERATED)
def test_re2_agrees_with_a_backtracking_engine(value: bytes) -> None:
    """RE2's answer is PCRE's: each CRS pattern in its RE2 form and in its backtracking
    (`regex`) form say the same for the same value."""
    for pattern, rx in zip(crs_data.rx_patterns(), crs_regexes(), strict=True):
        backtracking = regex.compile(translate(pattern).python.encode("latin-1"), regex.DOTALL)
        expected = backtracking.search(value, timeout=1.0) is not None
        assert (rx.search(value) is not None) == expected, pattern


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (r"abc$", b"xabc", True),
        (r"abc$", b"abc\n", False),  # PCRE_DOLLAR_ENDONLY: $ is the very end
        (r"a.c", b"a\nc", True),  # PCRE_DOTALL
        (r"^a\sb", b"a\x0bb", True),  # \s includes \x0b (PCRE >= 8.34)
        (r"\x{e2}\x80\x98", b"\xe2\x80\x98", True),  # braced hex: one byte
        (r"(?i)select", b"SeLeCt", True),
        (r"(?i)\xe9", b"\xc9", False),  # case folds ASCII only (C locale)
        (r"^(?i)up", b"UP", True),  # a flag group after the start
        (r"a(?i)b", b"AB", False),  # ... scoped to the rest
        (r"a(?i)b|c", b"C", True),  # ... of its group, later branches included
        (r"(?:x(?i)y|z)w", b"Zw", True),
        (r"(?:x(?i)y|z)w", b"zW", False),
        (r"\bword\b", b"a word.", True),
        ("é", "é".encode(), True),  # a literal in the rule file: its UTF-8 bytes
    ],
)
def test_pcre_meaning(pattern: str, value: bytes, matches: bool) -> None:
    assert (compile_regex(pattern).search(value) is not None) == matches
    if matches:
        assert PatternSet([pattern]).set_candidates(value) == {0}
        assert PatternSet([pattern]).prefilter_candidates(value) == {0}


@pytest.mark.parametrize(
    ("pattern", "why", "value"),
    [
        (r"(a)\1", "backreference", b"xaa"),
        (r"a(?=b)", "lookahead", b"ab"),
        (r"(?<!a)b", "lookbehind", b"cb"),
        (r"a++b", "possessive quantifier", b"aab"),
        (r"(?>a|ab)c", "atomic group", b"ac"),
        (r"(?|(a)|(b))", "branch reset", b"b"),
    ],
)
def test_patterns_re2_cannot_run_fall_back_and_are_never_skipped(
    pattern: str, why: str, value: bytes
) -> None:
    rx = compile_regex(pattern)
    assert rx.engine == "regex"
    assert why in rx.why_fallback
    assert rx.search(value) is not None
    patterns = PatternSet([r"never-here", pattern])
    assert patterns.engine_of(1) in ("literals", "always")  # not in the RE2 Set
    assert 1 in patterns.set_candidates(value)
    assert 1 in patterns.prefilter_candidates(value)


def test_fallback_captures_and_backtracking_semantics() -> None:
    assert compile_regex(r"(a)\1").search(b"xaa") == (b"aa", b"a")
    assert compile_regex(r"a++b").search(b"aab") == (b"aab",)
    assert compile_regex(r"(?|(a)|(b))").search(b"b") == (b"b", b"b")


def test_fallback_time_bound() -> None:
    """A catastrophic backtracking pattern on a crafted value stops at the limit and is
    taken as no match (ModSecurity's PCRE match limit), and is counted."""
    from outwork.waf import patterns as module

    before = module.REGEX_TIMEOUTS.regex_timeouts
    rx = compile_regex(r"(?:(.)\1?)*+\1(?<=zz)")
    assert rx.engine == "regex"
    assert rx.search(b"ab" * 3000) is None
    assert module.REGEX_TIMEOUTS.regex_timeouts == before + 1


def test_captures_are_groups_zero_to_nine() -> None:
    rx = compile_regex(r"(a)(b)?(c)(d)(e)(f)(g)(h)(i)(j)(k)")
    assert rx.search(b"acdefghijk") == (
        b"acdefghijk",
        b"a",
        b"",
        b"c",
        b"d",
        b"e",
        b"f",
        b"g",
        b"h",
        b"i",
    )


@pytest.mark.parametrize("pattern", [r"a[b", r"(a", r"\x{100}", "a\\"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        compile_regex(pattern)


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        (r"(?i)union\s+select", {b"select"}),
        (r"(?i)(?:a|b)c", {b"ac", b"bc"}),
        (r"['\"]or", {b"'or", b'"or'}),
        (r"a(?:bc|de)+f", {b"bc", b"de"}),
        (r"[\n\r]", {b"\n", b"\r"}),
        (r"(?:ab|)c", {b"c"}),
        (r"x?y", {b"y"}),
        (r"^.*$", None),
        (r"\W{4}", None),
        (r"(?|(a)|(b))", None),  # Python's parser cannot read it: a candidate always
    ],
)
def test_required_literals(pattern: str, literals: set[bytes] | None) -> None:
    assert required_literals(pattern) == (None if literals is None else frozenset(literals))


ATOMS = st.sampled_from(
    [
        "a",
        "b",
        "ab",
        "(?:a|bc)",
        "[ab]",
        "[^a]",
        ".",
        "\\s",
        "a?",
        "b*",
        "(?:ab)+",
        "c{2}",
        "$",
        "^",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    atoms=st.lists(ATOMS, min_size=1, max_size=6),
    value=st.binary(max_size=12) | st.text("abc ").map(str.encode),
)
def test_required_literals_are_in_every_match(atoms: list[str], value: bytes) -> None:
    """Whenever a regex matches, the value holds one of its required literals."""
    pattern = "(?i)" + "".join(atoms)
    literals = required_literals(pattern)
    if literals is not None and compile_regex(pattern).search(value) is not None:
        assert any(literal in value.lower() for literal in literals), (pattern, value)
