"""Transformations against ModSecurity 2.9 itself (Debian's Apache module, the engine CRS's
numbers are measured with), run as a test oracle on loopback.

Apache with mod_security2 has one rule per transformation: it hex-decodes the request header
X-In (so any bytes can be sent), applies the transformation, hex-encodes the result and hands
it back in a response header (setenv + mod_headers). Each generated value goes through
ModSecurity and through outwork's transformation: the bytes must be the same. ModSecurity
loads unicode.mapping 20127 as CRS's recommended setup does.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.waf.operators import Operator, build_operator
from outwork.waf.transforms import TRANSFORMS
from tests.conftest import require_file, require_tool
from tests.e2e.servers import free_port
from tests.waf import crs_data
from tests.waf.modsec_verdicts import MODULES, UNICODE_MAPPING, httpd, httpd_prelude

# ModSecurity 2.9's names for outwork's transformations (2.9 has no uppercase: v3 added it).
CHECKED = {
    "base64decode": "base64Decode",
    "base64decodeext": "base64DecodeExt",
    "cmdline": "cmdLine",
    "compresswhitespace": "compressWhitespace",
    "cssdecode": "cssDecode",
    "escapeseqdecode": "escapeSeqDecode",
    "hexencode": "hexEncode",
    "htmlentitydecode": "htmlEntityDecode",
    "jsdecode": "jsDecode",
    "length": "length",
    "lowercase": "lowercase",
    "md5": "md5",
    "normalizepath": "normalizePath",
    "normalizepathwin": "normalizePathWin",
    "removecommentschar": "removeCommentsChar",
    "removenulls": "removeNulls",
    "removewhitespace": "removeWhitespace",
    "replacecomments": "replaceComments",
    "replacenulls": "replaceNulls",
    "sha1": "sha1",
    "sqlhexdecode": "sqlHexDecode",
    "trim": "trim",
    "trimleft": "trimLeft",
    "trimright": "trimRight",
    "urldecode": "urlDecode",
    "urldecodeuni": "urlDecodeUni",
    "urlencode": "urlEncode",
    "utf8tounicode": "utf8toUnicode",
}


def crs_operator_checks() -> dict[str, tuple[str, str]]:
    """key -> (operator, argument): every distinct CRS @rx, @pm, @validateByteRange and
    constant string test, plus libinjection and the encoding validators."""
    checks: dict[str, tuple[str, str]] = {}
    seen: set[tuple[str, str]] = set()
    for entry in crs_data.operators():
        operator, argument = entry["operator"], entry["argument"]
        if (operator, argument) in seen or "%{" in argument:
            continue
        if operator in ORACLE_OPERATORS:
            seen.add((operator, argument))
            checks[f"{operator.lower()}{len(checks)}"] = (operator, argument)
    for operator in ("detectSQLi", "detectXSS", "validateUtf8Encoding", "validateUrlEncoding"):
        checks[operator.lower()] = (operator, "")
    return checks


MAX_ORACLE_VALUE = 8192
ORACLE_OPERATORS = {"rx", "pm", "validateByteRange", "streq", "beginsWith", "endsWith", "contains"}
OPERATOR_CHECKS = crs_operator_checks()


def config(root: Path, port: int) -> str:
    rules = []
    for number, (key, (operator, argument)) in enumerate(OPERATOR_CHECKS.items(), start=1000):
        quoted = argument.replace('"', '\\"')
        rules.append(
            f'SecRule REQUEST_HEADERS:X-In "@{operator} {quoted}" "id:{number},phase:1,pass,'
            f'nolog,t:none,t:hexDecode,setenv:m_{key}=1"\n'
            f'Header always merge X-Match "{key}" env=m_{key}'
        )
    for number, (key, name) in enumerate(sorted(CHECKED.items()), start=1):
        rules.append(
            f'SecRule REQUEST_HEADERS:X-In "@unconditionalMatch" "id:{number},phase:1,pass,'
            f"nolog,t:none,t:hexDecode,t:{name},t:hexEncode,"
            f'setenv:out_{key}=%{{MATCHED_VAR}}"\n'
            f'Header always set X-Out-{key} "%{{out_{key}}}e"'
        )
    body = "\n".join(rules)
    return (
        httpd_prelude(root, port)
        + f"""DocumentRoot {root}
# The value travels hex-encoded in one header: room for CRS's longest payloads.
LimitRequestFieldSize 131072
SecRuleEngine On
SecRequestBodyAccess Off
SecAuditEngine Off
SecTmpDir {root}
SecDataDir {root}
SecUnicodeMapFile {UNICODE_MAPPING} 20127
SecPcreMatchLimit 1000000
SecPcreMatchLimitRecursion 1000000
{body}
"""
    )


@pytest.fixture(scope="module")
def modsecurity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    apache = require_tool("apache2")
    require_file(MODULES / "mod_security2.so", "libapache2-mod-security2")
    require_file(UNICODE_MAPPING, "libapache2-mod-security2")
    root = tmp_path_factory.mktemp("modsecurity")
    port = free_port()
    with httpd(root, config(root, port), port, apache, tries=100):
        yield f"http://127.0.0.1:{port}/"


def modsecurity_answers(url: str, value: bytes) -> tuple[dict[str, bytes], set[str]]:
    """What ModSecurity made of `value`: each transformation's output, and the keys of the
    operator checks that matched."""
    request = urllib.request.Request(url, headers={"X-In": value.hex()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            headers = response.headers
    except urllib.error.HTTPError as answer:  # 404: there is no document, which is fine
        headers = answer.headers
    out = {}
    for key in CHECKED:
        hex_value = headers.get(f"X-Out-{key}", "")
        out[key] = bytes.fromhex(hex_value) if hex_value != "(null)" else b""
    matched = {key.strip() for key in headers.get("X-Match", "").split(",") if key.strip()}
    return out, matched


def modsecurity_transforms(url: str, value: bytes) -> dict[str, bytes]:
    return modsecurity_answers(url, value)[0]


# Where outwork deliberately differs from ModSecurity 2.9 (each documented at its function).
def expected_difference(key: str, value: bytes) -> bool:
    if key == "cmdline" and b"\x00" in value:
        return True  # v2 stops at a NUL (C string); outwork reads the whole value, as v3
    return False


FRAGMENTS = st.sampled_from(
    [
        b"%", b"%u", b"%U", b"+", b"41", b"ff", b"0", b"4", b"g", b"\\", b"\\u", b"\\x", b"&",
        b"&#", b"&#x", b";", b"amp", b"lt", b"nbsp", b"/", b".", b"..", b"/*", b"*/", b"<!--",
        b"-->", b"--", b"#", b" ", b"\t", b"\n", b"\x0b", b"\xa0", b"\x00", b"'", b'"', b"^",
        b",", b"(", b"0x", b"A", b"z", b"\xc3\xa9", b"\xe2\x80\x9c", b"\xc0\xaf", b"=",
    ]
)  # fmt: skip
VALUES = st.one_of(
    st.lists(FRAGMENTS, min_size=1, max_size=20).map(b"".join),
    st.binary(min_size=1, max_size=60),
)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=VALUES)
def test_transformations_equal_modsecurity(modsecurity: str, value: bytes) -> None:
    theirs = modsecurity_transforms(modsecurity, value)
    for key in CHECKED:
        if expected_difference(key, value):
            continue
        assert TRANSFORMS[key](value) == theirs[key], (key, value)


@pytest.mark.parametrize(
    "value",
    [
        b"%u201dQuoted%u2019s%u2018 word%u2014dash%uff01%u0100",
        b"&#x3c;&#60&lt;&LT;&nbsp;&foo;&#xg;",
        b"\\u0041\\x41\\101\\400\\8\\",
        b"\\3c\\73 cript\\\n\\ff01\\0000ff01",
        b"/a/./b/../../../c//d/.",
        b"dir/../../x/",
        b"\\a\\..\\b\\",
        b'C:\\WINDOWS\\system32\\CMD.exe /c "dir" , ^p(x) ;/x',
        b"SELECT/**/1<!-- x -->--#",
        "caf\u00e9 \u2603 \U0001f600".encode() + b"\xc0\xaf\xed\xa0\x80",
        b"VGVzdENhc2U=\x000x414243 0x4",
    ],
)
def test_known_cases_equal_modsecurity(modsecurity: str, value: bytes) -> None:
    theirs = modsecurity_transforms(modsecurity, value)
    differing = {
        key: (TRANSFORMS[key](value), theirs[key])
        for key in CHECKED
        if TRANSFORMS[key](value) != theirs[key] and not expected_difference(key, value)
    }
    assert not differing


PATHS = st.lists(
    st.sampled_from([b"/", b".", b"..", b"\\", b"a", b"bc", b"%u", b"\x00"]),
    min_size=1,
    max_size=14,
).map(b"".join)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=PATHS)
def test_path_normalization_equals_modsecurity(modsecurity: str, value: bytes) -> None:
    theirs = modsecurity_transforms(modsecurity, value)
    assert TRANSFORMS["normalizepath"](value) == theirs["normalizepath"], value
    assert TRANSFORMS["normalizepathwin"](value) == theirs["normalizepathwin"], value


@cache
def outwork_operators() -> dict[str, Operator]:
    return {
        key: build_operator(operator, argument, Path("."))
        for key, (operator, argument) in OPERATOR_CHECKS.items()
    }


def outwork_matches(value: bytes) -> set[str]:
    return {
        key
        for key, operator in outwork_operators().items()
        if operator.match(value, lambda text: b"") is not None
    }


def test_operator_checks_cover_crs() -> None:
    kinds = {operator for operator, _ in OPERATOR_CHECKS.values()}
    assert kinds == ORACLE_OPERATORS | {
        "detectSQLi", "detectXSS", "validateUtf8Encoding", "validateUrlEncoding"
    }  # fmt: skip
    assert sum(1 for operator, _ in OPERATOR_CHECKS.values() if operator == "rx") == 295


def test_transformations_and_operators_equal_modsecurity_on_crs_payloads(modsecurity: str) -> None:
    """Every CRS regression request string: each transformation gives the same bytes, and
    the same CRS operators match, in ModSecurity 2.9 and in outwork (ModSecurity's PCRE2
    against RE2 and `regex`, its acmp against outwork's (acmp.py), its libinjection against
    Debian's libmodsecurity3 one)."""
    differing = {}
    checked = 0
    for value in crs_data.payloads():
        # Its answer comes back in response headers, which Python reads up to 64 KiB a line
        # (the urlEncode'd, hex-encoded copy of an 8 KiB value fits).
        if not value or len(value) > MAX_ORACLE_VALUE:
            continue
        checked += 1
        transformed, theirs = modsecurity_answers(modsecurity, value)
        ours = outwork_matches(value)
        if ours != theirs:
            differing[value] = (sorted(ours - theirs), sorted(theirs - ours))
        for key in CHECKED:
            if TRANSFORMS[key](value) != transformed[key] and not expected_difference(key, value):
                differing[value] = ([key], [key])
    assert not differing
    assert checked > 4400


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=VALUES)
def test_operators_equal_modsecurity_on_generated_values(modsecurity: str, value: bytes) -> None:
    _, theirs = modsecurity_answers(modsecurity, value)
    assert outwork_matches(value) == theirs
