"""Operators: ModSecurity 2.9's semantics, every operator CRS v4.28 uses builds."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.waf.acmp import ModsecAcmp
from outwork.waf.operators import OperatorMatch, Pm, build_operator, c_atoi, joined_lower
from tests.conftest import require_file
from tests.waf import crs_data

MACROS = {
    "%{tx.allowed_methods}": b"GET HEAD POST OPTIONS",
    "%{tx.1}": b"7",
    "%{request_headers.host}": b"example.com",
}


def expand(text: str) -> bytes:
    """The engine's macro expansion, for the macros these tests use."""
    value = text.encode()
    for macro, replacement in MACROS.items():
        value = value.replace(macro.encode(), replacement)
    return value


def no_macros(text: str) -> bytes:
    raise AssertionError(f"a constant argument was expanded: {text!r}")


def run(name: str, argument: str, value: bytes, data_dir: Path = Path(".")) -> OperatorMatch | None:
    return build_operator(name, argument, data_dir).match(value, expand)


def libinjection_installed() -> None:
    require_file("/usr/lib/x86_64-linux-gnu/libmodsecurity.so.3", "libmodsecurity3")


def test_every_crs_operator_is_known() -> None:
    used = {entry["operator"] for entry in crs_data.operators()}
    assert used == {
        "rx", "lt", "eq", "ge", "gt", "pmFromFile", "pm", "streq", "within", "endsWith",
        "validateByteRange", "contains", "ipMatch", "detectXSS", "detectSQLi",
        "unconditionalMatch", "validateUtf8Encoding", "validateUrlEncoding", "beginsWith",
    }  # fmt: skip


def test_every_crs_operator_builds(tmp_path: Path) -> None:
    """All 695 operators of CRS v4.28 compile. @pmFromFile reads the vendored data files
    when the CRS rules are in the repository, else stand-in files of the same names."""
    libinjection_installed()
    data_dir = crs_data.VENDORED_RULES
    if not data_dir.is_dir():
        data_dir = tmp_path
        for entry in crs_data.operators():
            if entry["operator"] == "pmFromFile":
                for name in entry["argument"].split():
                    (tmp_path / name).write_text("# stand-in\nphrase\n")
    built = [
        build_operator(entry["operator"], entry["argument"], data_dir)
        for entry in crs_data.operators()
    ]
    assert len(built) == len(crs_data.operators()) == 695


# --- @rx ---------------------------------------------------------------------------------------


def test_rx_captures_groups_zero_to_nine() -> None:
    found = run("rx", r"(?i)(union)[\s\x0b]+(select)", b"1 UNION\x0b select 2")
    assert found == OperatorMatch(b"UNION\x0b select", (b"UNION\x0b select", b"UNION", b"select"))
    assert run("rx", r"^\d+$", b"12a") is None


def test_rx_argument_is_not_expanded() -> None:
    operator = build_operator("rx", r"%{tx.1}", Path("."))
    assert operator.match(b"%{tx.1}", no_macros) is not None


# --- @pm, @pmFromFile ------------------------------------------------------------------------


def test_pm_is_case_insensitive_and_reports_the_phrase_as_written() -> None:
    # ModSecurity 2.9.7 logs TX.0 `document.cookie` here: acmp reports its trie's text.
    found = run("pm", "document.cookie .innerhtml <!", b"x=Document.Cookie")
    assert found == OperatorMatch(b"document.cookie", (b"document.cookie",))
    assert run("pm", "( )", b"a)b") == OperatorMatch(b")", (b")",))
    assert run("pm", "gzip deflate", b"identity") is None


def test_pm_first_phrase_to_end_wins_named_as_acmp_names_it() -> None:
    # `bc` ends first, found through the state `abc`, whose text acmp reports (ModSecurity
    # 2.9.7 logs TX.0 `abc` for `xabcd`, and `bc` for `xbc`).
    assert run("pm", "abcd bc", b"xabcd") == OperatorMatch(b"abc", (b"abc",))
    assert run("pm", "abcd bc", b"xbc") == OperatorMatch(b"bc", (b"bc",))


def test_pm_matches_bytes_not_characters() -> None:
    assert run("pm", "\xe9t\xe9", "l'été".encode()) is not None
    assert run("pm", "ab", b"\xc1B") is None


def test_pm_from_file(tmp_path: Path) -> None:
    (tmp_path / "a.data").write_bytes(b"# comment\n\n/etc/passwd\r\n  cmd.exe  \n")
    (tmp_path / "b.data").write_bytes(b"powershell\n")
    operator = build_operator("pmFromFile", "a.data b.data", tmp_path)
    assert operator.match(b"GET /ETC/PASSWD", expand) == OperatorMatch(
        b"/etc/passwd", (b"/etc/passwd",)
    )
    assert operator.match(b"run CMD.EXE /c", expand) is not None
    assert operator.match(b"PowerShell -enc", expand) is not None
    assert operator.match(b"# comment", expand) is None
    assert build_operator("pmf", "b.data", tmp_path).match(b"powershell", expand) is not None


@pytest.mark.parametrize(
    ("name", "argument"),
    [("pm", ""), ("pmFromFile", ""), ("pmFromFile", "missing.data"), ("pmFromFile", "https://x/y")],
)
def test_pm_bad_arguments(name: str, argument: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_operator(name, argument, tmp_path)


# --- libinjection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fingerprint"),
    [
        (b"1' or '1'='1", b"s&sos"),
        (b"1 UNION SELECT password FROM users--", b"1UEnk"),
        (b"-1839' or '1'='1", b"s&sos"),
    ],
)
def test_detect_sqli_reports_libinjection_fingerprint(value: bytes, fingerprint: bytes) -> None:
    libinjection_installed()
    assert run("detectSQLi", "", value) == OperatorMatch(fingerprint, (fingerprint,))


@pytest.mark.parametrize("value", [b"hello world", b"O'Reilly", b"select a product", b""])
def test_detect_sqli_lets_benign_text_through(value: bytes) -> None:
    libinjection_installed()
    assert run("detectSQLi", "", value) is None


def test_detect_xss() -> None:
    libinjection_installed()
    assert run("detectXSS", "", b"<script>alert(1)</script>") is not None
    assert run("detectXSS", "", b'<img src=x onerror="alert(1)">') is not None
    assert run("detectXSS", "", b"a < b and c > d") is None
    assert run("detectXSS", "", b"") is None


def test_detect_operators_take_no_argument() -> None:
    with pytest.raises(ValueError, match="no argument"):
        build_operator("detectSQLi", "x", Path("."))


# --- strings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "argument", "value", "matches"),
    [
        ("streq", "POST", b"POST", True),
        ("streq", "POST", b"post", False),
        ("beginsWith", "#:~:text=", b"#:~:text=abc", True),
        ("beginsWith", "abc", b"ab", False),
        ("endsWith", ".pdf", b"/a/b.pdf", True),
        ("endsWith", ".pdf", b"/a/b.PDF", False),
        ("endsWith", ".%{request_headers.host}", b"www.example.com", True),
        ("contains", "-->", b"a-->b", True),
        ("contains", "", b"anything", True),
        ("strmatch", "bc", b"abcd", True),
        ("within", "%{tx.allowed_methods}", b"POST", True),
        ("within", "%{tx.allowed_methods}", b"PUT", False),
        ("within", "%{tx.allowed_methods}", b"", True),  # "The empty string always matches"
        ("within", "HTTP/2 HTTP/2.0 HTTP/3", b"HTTP/2.0", True),
        ("containsWord", "select", b"a select b", True),
        ("containsWord", "select", b"selection", False),
        ("containsWord", "select", b"select", True),
        ("containsWord", "select", b"_select", False),
    ],
)
def test_string_operators(name: str, argument: str, value: bytes, matches: bool) -> None:
    found = run(name, argument, value)
    assert (found is not None) == matches
    if found is not None:
        assert found.matched == value


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [(b"42", 42), (b"  -7x", -7), (b"+3", 3), (b"abc", 0), (b"", 0), (b"12abc", 12), (b"1e5", 1)],
)
def test_c_atoi(text: bytes, number: int) -> None:
    assert c_atoi(text) == number


@pytest.mark.parametrize(
    ("name", "argument", "value", "matches"),
    [
        ("eq", "0", b"0", True),
        ("eq", "0", b"", True),  # atoi("") is 0, as ModSecurity compares
        ("eq", "1", b"01", True),
        ("ge", "%{tx.1}", b"7", True),
        ("ge", "%{tx.1}", b"6", False),
        ("gt", "100", b"101", True),
        ("gt", "100", b"100", False),
        ("lt", "2", b"1", True),
        ("lt", "2", b"abc", True),
        ("le", "2", b"2", True),
        ("le", "2", b"3", False),
    ],
)
def test_number_operators(name: str, argument: str, value: bytes, matches: bool) -> None:
    assert (run(name, argument, value) is not None) == matches


# --- validation ------------------------------------------------------------------------------


def test_validate_byte_range() -> None:
    operator = build_operator("validateByteRange", "9,10,13,32-126,128-255", Path("."))
    assert operator.match(b"plain text\r\n\t\xff", expand) is None
    assert operator.match(b"bell\x07", expand) == OperatorMatch(b"bell\x07")
    assert run("validateByteRange", "1-255", b"nul\x00") is not None
    assert run("validateByteRange", "1-255", b"") is None


@pytest.mark.parametrize("argument", ["", "a-b", "300", "5-2", "-1"])
def test_validate_byte_range_bad_arguments(argument: str) -> None:
    with pytest.raises(ValueError):
        build_operator("validateByteRange", argument, Path("."))


@pytest.mark.parametrize(
    ("value", "invalid"),
    [
        (b"a%20b", False),
        (b"plain", False),
        (b"%", True),
        (b"%4", True),
        (b"%zz", True),
        (b"%4g", True),
    ],
)
def test_validate_url_encoding(value: bytes, invalid: bool) -> None:
    assert (run("validateUrlEncoding", "", value) is not None) == invalid


@pytest.mark.parametrize(
    ("value", "invalid"),
    [
        ("héllo ☃ \U0001f600".encode(), False),
        (b"ascii", False),
        (b"\xc3", True),  # cut
        (b"\xc0\xaf", True),  # overlong '/'
        (b"\xed\xa0\x80", True),  # surrogate
        (b"\xf4\x90\x80\x80", True),  # above U+10FFFF
        (b"\x80", True),  # lone continuation byte
    ],
)
def test_validate_utf8_encoding(value: bytes, invalid: bool) -> None:
    assert (run("validateUtf8Encoding", "", value) is not None) == invalid


# --- addresses, constants, errors ------------------------------------------------------------


def test_ip_match() -> None:
    operator = build_operator("ipMatch", "127.0.0.1,::1, 10.0.0.0/8", Path("."))
    assert operator.match(b"127.0.0.1", expand) is not None
    assert operator.match(b"10.9.8.7", expand) is not None
    assert operator.match(b"::1", expand) is not None
    assert operator.match(b"192.0.2.1", expand) is None
    assert operator.match(b"not an address", expand) is None


def test_ip_match_from_file(tmp_path: Path) -> None:
    (tmp_path / "ips.data").write_text("# trusted\n192.0.2.0/24\n2001:db8::/32\n")
    operator = build_operator("ipMatchFromFile", "ips.data", tmp_path)
    assert operator.match(b"192.0.2.77", expand) is not None
    assert operator.match(b"2001:db8::5", expand) is not None
    assert operator.match(b"198.51.100.1", expand) is None


def test_unconditional_and_no_match() -> None:
    assert run("unconditionalMatch", "", b"x") == OperatorMatch(b"x")
    assert run("noMatch", "", b"x") is None


@pytest.mark.parametrize(
    ("name", "argument"),
    [("rbl", "x"), ("nosuch", ""), ("ipMatch", "300.1.1.1"), ("ipMatch", ""), ("rx", "a[")],
)
def test_unknown_operator_or_bad_argument_is_refused(name: str, argument: str) -> None:
    with pytest.raises(ValueError):
        build_operator(name, argument, Path("."))


def test_operator_names_are_case_insensitive() -> None:
    assert run("STREQ", "a", b"a") is not None
    assert run("VALIDATEUTF8ENCODING", "", b"\xc3") is not None


@given(value=st.binary(max_size=300))
def test_operators_take_any_bytes(value: bytes) -> None:
    for name, argument in [
        ("validateByteRange", "32-126"),
        ("validateUrlEncoding", ""),
        ("validateUtf8Encoding", ""),
        ("pm", "select union"),
        ("within", "%{tx.allowed_methods}"),
        ("eq", "0"),
        ("ipMatch", "10.0.0.0/8"),
        ("containsWord", "or"),
    ]:
        found = run(name, argument, value)
        assert found is None or isinstance(found.matched, bytes)


def test_extracted_operators_match_the_vendored_rules() -> None:
    """tests/data/waf/crs-operators.json is what scripts/extract-crs-operators.py reads
    from the CRS rules the product ships (once they are in the repository)."""
    if not crs_data.VENDORED_RULES.is_dir():
        pytest.skip("the CRS rules are vendored by the WAF engine's branch")
    script = crs_data.ROOT / "scripts" / "extract-crs-operators.py"
    extract = runpy.run_path(str(script), run_name="extract")["extract"]
    assert callable(extract)
    assert extract(crs_data.VENDORED_RULES) == crs_data.operators()


@given(
    st.lists(
        st.text(alphabet="abcSELECT \n\t;/", max_size=12).map(lambda s: s.encode()), max_size=6
    )
)
def test_pm_over_joined_values_finds_what_it_finds_in_each(values: list[bytes]) -> None:
    pm = build_operator("pm", "select cat /etc ab", Path("."))
    assert isinstance(pm, Pm)
    assert pm.found_in(values) == any(pm.match(v, _no_expand) is not None for v in values)


def _no_expand(text: str) -> bytes:
    return text.encode()


# Phrases and values over letters of both cases, regex metacharacters (the phrase search is
# an RE2 Set: each phrase must be taken literally), bytes outside ASCII and a line break.
PM_BYTES = st.sampled_from([bytes([b]) for b in b"aAbB.*(\\\x00\xc3\xa9 \n"])
PM_PHRASES = st.lists(
    st.lists(PM_BYTES, min_size=1, max_size=4)
    .map(b"".join)
    .filter(lambda p: not p.isspace() and b"\n" not in p),
    min_size=1,
    max_size=5,
)
PM_VALUES = st.lists(PM_BYTES, max_size=24).map(b"".join)


@given(PM_PHRASES, PM_VALUES)
def test_pm_answers_as_the_acmp_walk_alone(phrases: list[bytes], value: bytes) -> None:
    """The phrase search only decides whether acmp's walk runs: the answer is the walk's."""
    pm = Pm(phrases)
    found = ModsecAcmp(phrases).first_match(value)
    expected = None if found is None else OperatorMatch(found, (found,))
    assert pm.match(value, _no_expand) == expected


@given(PM_PHRASES, st.lists(PM_VALUES, max_size=5))
def test_pm_found_in_joined_values_is_a_search_of_each(
    phrases: list[bytes], values: list[bytes]
) -> None:
    pm = Pm(phrases)
    in_one = any(phrase.lower() in value.lower() for phrase in phrases for value in values)
    assert pm.found_in(values) == in_one
    assert pm.found_in_joined(joined_lower(values)) == in_one
