"""CRS's regression tests (go-ftw YAML, tests/data/crs/regression) as requests, judged by
status as go-ftw's cloud mode judges them: a test expecting rule ids expects the request
blocked (403); a test expecting no ids expects it through.

    .venv/bin/python -m tests.waf.ftw --write   # re-record tests/data/crs/known-differences.json

A case whose rule sits above the paranoia level of the run is not applicable at that level
(the rule is off); every other case passes, or is listed in the known-differences file with
its reason (`test_crs_regression.py` fails on any other failure).

The response families (RESPONSE-95x) need the response CRS's test backend (albedo) makes: a
POST to `/reflect` answers what its JSON body describes (`demo/backend.py` makes the same
through a running gateway), any other request 200 with no body. Their cases run the four
phases, the body inspected as the `waf` step inspects it by default (its types, its limit).
"""

from __future__ import annotations

import base64
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from demo.backend import reflect
from outwork.filters.waf import DEFAULT_RESPONSE_BODY_LIMIT, DEFAULT_RESPONSE_MIME_TYPES
from outwork.waf.engine import Setup, Transaction, Waf
from outwork.waf.request import WafRequest
from outwork.waf.response import WafResponse

DATA = Path(__file__).resolve().parents[1] / "data" / "crs"
REGRESSION = DATA / "regression"
KNOWN = DATA / "known-differences.json"
LEVELS = (1, 2)

# What CRS's own test setup sets besides the paranoia level (CRS tests/docker-compose and
# the go-ftw configuration of its CI): limits some 920 tests rely on, and UTF-8 validation.
TEST_SETUP = (
    ("crs_validate_utf8_encoding", "1"),
    ("arg_name_length", "100"),
    ("arg_length", "400"),
    ("total_arg_length", "64000"),
    ("max_num_args", "255"),
    ("max_file_size", "64100"),
    ("combined_file_sizes", "65535"),
)


@dataclass(frozen=True, slots=True)
class Case:
    id: str  # "942100-3" (rule id, test id; "-sN" for a later stage)
    family: str  # "942"
    rule_id: int
    method: str
    uri: str
    version: str
    headers: tuple[tuple[str, str], ...]
    data: bytes | None
    raw: bytes | None  # an encoded_request: the bytes as sent
    expect_block: bool
    expect_ids: tuple[int, ...] = ()  # the rules CRS expects to match (log mode)
    no_expect_ids: tuple[int, ...] = ()  # the rules CRS expects not to match (log mode)


def _stages(path: Path) -> Iterator[tuple[str, int, dict[str, object], dict[str, object]]]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not document:
        return  # a file of comments only (CRS keeps some to satisfy its linter)
    rule_id = int(document["rule_id"])
    for test in document.get("tests") or []:
        stages = test.get("stages") or []
        for number, stage in enumerate(stages):
            stage = stage.get("stage", stage)  # the older schema nests it
            suffix = f"-s{number + 1}" if number else ""
            yield f"{rule_id}-{test['test_id']}{suffix}", rule_id, stage["input"], stage["output"]


def _expect(output: dict[str, object]) -> bool | None:
    log = output.get("log") or {}
    assert isinstance(log, dict)
    if output.get("expect_error"):
        return None  # a request the server must refuse to parse: the codec's business
    if log.get("expect_ids"):
        return True
    if log.get("no_expect_ids"):
        return False
    status = output.get("status")
    if status == 403:
        return True
    return None  # judged only by a response body or a status the WAF does not make


def _expected_ids(output: dict[str, object], key: str = "expect_ids") -> tuple[int, ...]:
    log = output.get("log") or {}
    assert isinstance(log, dict)
    return tuple(int(i) for i in log.get(key) or ())


@cache
def cases() -> tuple[Case, ...]:
    result: list[Case] = []
    for path in sorted(REGRESSION.glob("*/*.y*ml")):
        for case_id, rule_id, given, output in _stages(path):
            expect = _expect(output)
            if expect is None:
                continue
            headers = given.get("headers") or {}
            assert isinstance(headers, dict)
            pairs = [(str(k), str(v)) for k, v in headers.items()]
            data = given.get("data")
            body = None if data is None else str(data).encode("utf-8", "surrogateescape")
            if given.get("autocomplete_headers", True):
                # go-ftw's standard headers: a form Content-Type and the Content-Length for
                # a body that has none, and Connection: close.
                names = {k.lower() for k, _ in pairs}
                if body and "content-type" not in names:
                    pairs.append(("Content-Type", "application/x-www-form-urlencoded"))
                if body and "content-length" not in names:
                    pairs.append(("Content-Length", str(len(body))))
                if "connection" not in names:
                    pairs.append(("Connection", "close"))
            encoded = given.get("encoded_request")
            raw = base64.b64decode(str(encoded)) if encoded else None
            result.append(
                Case(
                    id=case_id,
                    family=path.parent.name.split("-")[1],  # CRS's folder: REQUEST-942-...
                    rule_id=rule_id,
                    method=str(given.get("method") or "GET"),
                    uri=str(given.get("uri") or "/"),
                    version=str(given.get("version") or "HTTP/1.1"),
                    headers=tuple(pairs),
                    data=body,
                    raw=raw,
                    expect_block=expect,
                    expect_ids=_expected_ids(output),
                    no_expect_ids=_expected_ids(output, "no_expect_ids"),
                )
            )
    return tuple(result)


@cache
def waf(level: int) -> Waf:
    return Waf.load(setup=Setup(paranoia_level=level, extra=TEST_SETUP))


@cache
def rule_levels() -> dict[int, int]:
    """Each CRS rule's paranoia level (its `paranoia-level/N` tag; 1 without one)."""
    levels: dict[int, int] = {}
    for rule in waf(1).rules:
        level = 1
        for tag in rule.tags:
            if tag.startswith("paranoia-level/"):
                level = int(tag.rpartition("/")[2])
        levels[rule.id] = level
    return levels


def applicable(case: Case, level: int) -> bool:
    """A case expecting a block is judged at a level where one of the rules it expects is on."""
    if not case.expect_block:
        return True
    levels = rule_levels()
    return min(levels.get(i, 1) for i in case.expect_ids or (case.rule_id,)) <= level


def request_of(case: Case) -> WafRequest:
    if case.raw is not None:
        head, _, body = case.raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method, _, rest = lines[0].partition(b" ")
        target, _, protocol = rest.rpartition(b" ")
        headers = [(n.strip(), v.strip()) for n, _, v in (x.partition(b":") for x in lines[1:])]
        return WafRequest(
            method, target, protocol, headers, "127.0.0.1", 40000, framed(headers, body)
        )
    headers = [(k.encode("latin-1", "replace"), v.encode("utf-8")) for k, v in case.headers]
    return WafRequest(
        case.method.encode("latin-1", "replace"),
        case.uri.encode("utf-8", "surrogateescape"),
        case.version.encode("latin-1", "replace"),
        headers,
        "127.0.0.1",
        40000,
        framed(headers, case.data or b""),
    )


HEX_DIGITS = b"0123456789abcdefABCDEF"


def framed(headers: list[tuple[bytes, bytes]], sent: bytes) -> bytes:
    """The body an HTTP/1.1 server hands over (the gateway's codec, Apache to ModSecurity):
    de-chunked under `Transfer-Encoding: chunked`, else cut at its Content-Length (what
    follows would be the next request), and none without either. Bytes that do not frame
    (a bad chunk size, a Content-Length that is not a number) stay as sent."""
    values = {n.lower(): v for n, v in headers}
    if b"chunked" in values.get(b"transfer-encoding", b"").lower():
        body, rest = bytearray(), sent
        while True:
            size_line, crlf, rest = rest.partition(b"\r\n")
            size_text = size_line.split(b";")[0].strip()
            if (
                not crlf
                or not size_text
                or any(c not in b"0123456789abcdefABCDEF" for c in size_text)
            ):
                return sent
            size = int(size_text, 16)
            if size == 0:
                return bytes(body)
            body += rest[:size]
            rest = rest[size + 2 :]
    length = values.get(b"content-length", b"").strip()
    if length.isdigit():
        return sent[: int(length)]
    return sent if b"content-length" in values else b""  # neither: no body (RFC 9112 6.3)


@cache
def log_mode_waf(level: int) -> Waf:
    """CRS's test setup with no inbound blocking: a request that scores still reaches the
    response phases, so a response case is judged by the rules it matches (log mode)."""
    extra = (*TEST_SETUP, ("inbound_anomaly_score_threshold", "100000"))
    return Waf.load(setup=Setup(paranoia_level=level, extra=extra))


def matched_ids(case: Case, level: int) -> set[int]:
    return {m.id for m in run(case, level, log_mode_waf(level)).matches}


@cache
def plain_waf(level: int) -> Waf:
    """The rule set as the `waf` step builds it from `{paranoia_level: level}` (without the
    limits of CRS's test setup, which no config key sets)."""
    return Waf.load(setup=Setup(paranoia_level=level))


def response_family(case: Case) -> bool:
    return case.family >= "950"


def response_of(case: Case) -> WafResponse:
    """What albedo answers the case's request."""
    if case.uri.split("?", 1)[0] != "/reflect" or case.method != "POST":
        return WafResponse(200, b"HTTP/1.1", [], 0)
    status, headers, body = reflect(case.data or b"")
    pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
    return WafResponse(status, b"HTTP/1.1", pairs, len(body), body)


def inspected(response: WafResponse) -> bool:
    """Whether the `waf` step holds this body for phase 4 by default (filters/waf.py)."""
    mime = response.mime_type.decode("latin-1")
    codings = response.header_values(b"content-encoding")
    plain = all(c.strip().lower() in (b"", b"identity") for c in codings)
    return mime in DEFAULT_RESPONSE_MIME_TYPES and plain


def run(case: Case, level: int, rules: Waf | None = None) -> Transaction:
    transaction = (rules or waf(level)).transaction(request_of(case))
    transaction.run_phase(1)
    transaction.run_phase(2)
    if response_family(case) and transaction.would_interrupt is None:
        response = response_of(case)
        body = response.body or b""
        response.body = None
        transaction.respond(response)
        if transaction.run_phase(3) is None:
            if inspected(response) and body:
                response.body = body[:DEFAULT_RESPONSE_BODY_LIMIT]
                response.body_complete = len(body) <= DEFAULT_RESPONSE_BODY_LIMIT
            transaction.run_phase(4)
    return transaction


@cache
def outcome(case: Case, level: int) -> tuple[bool, tuple[int, ...]]:
    """The engine's verdict on a case at a level: blocked, and the request rules that matched
    and logged (kept: the CRS and the ModSecurity comparisons both read it)."""
    transaction = run(case, level)
    ids = sorted({m.id for m in transaction.matches if m.log and m.id < 950000})
    return transaction.would_interrupt is not None, tuple(ids)


def blocked(case: Case, level: int, rules: Waf | None = None) -> bool:
    if rules is None:
        return outcome(case, level)[0]
    return run(case, level, rules).would_interrupt is not None


# Cases whose request an HTTP server changes (or refuses) before any WAF sees it: in process
# the engine gets the bytes as written.
SERVER = {
    "920181-1": "Content-Length and Transfer-Encoding together: httpd drops the Content-Length "
    "before ModSecurity reads the headers, and the gateway refuses such a request at its codec",
    "920620-1": "two Content-Type lines: httpd joins them into one (as the test says); in "
    "process the request keeps two",
    "920640-5": "a body with neither Content-Length nor Transfer-Encoding: an HTTP/1.1 server "
    "reads no body (the test says it cannot work over HTTP/1.1); in process it is handed over",
    "921140-1": "a header value with a bare CR: the gateway's codec refuses it before the WAF; "
    "in process it is handed over as is",
}


def reason(case: Case, level: int) -> str:
    """Why a case fails, from what the engine saw."""
    if case.id in SERVER:
        return "server: " + SERVER[case.id]
    transaction = run(case, level)
    ids = sorted({m.id for m in transaction.matches if m.log and m.id < 949000})
    score = transaction.anomaly_score
    if case.expect_block:
        if case.rule_id in ids:
            return (
                f"score: rule {case.rule_id} matches, but its score alone ({score}) stays below "
                "the threshold; CRS checks this case in log mode (the rule id), which a "
                "status cannot show"
            )
        return f"miss: rule {case.rule_id} does not match here (matched: {ids or 'none'})"
    if case.rule_id in ids:
        return f"false positive: rule {case.rule_id} matches where CRS expects it not to"
    return (
        f"other rules: the rule under test stays silent as expected, but {ids} (score {score}) "
        "block; CRS checks only the rule under test (log mode)"
    )


def failures(level: int) -> dict[str, str]:
    return {
        c.id: reason(c, level)
        for c in cases()
        if applicable(c, level) and blocked(c, level) != c.expect_block
    }


def pass_rates(level: int, family_cases: dict[str, list[Case]]) -> dict[str, str]:
    known = load_known().get(f"pl{level}", {})
    rates: dict[str, str] = {}
    for family, members in sorted(family_cases.items()):
        run_cases = [c for c in members if applicable(c, level)]
        failed = sum(1 for c in run_cases if c.id in known)
        rates[family] = f"{len(run_cases) - failed}/{len(run_cases)}"
    return rates


def load_known() -> dict[str, dict[str, str]]:
    if not KNOWN.is_file():
        return {}
    data = json.loads(KNOWN.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return {k: v for k, v in data.items() if k.startswith("pl")}


def by_family() -> dict[str, list[Case]]:
    families: dict[str, list[Case]] = {}
    for case in cases():
        families.setdefault(case.family, []).append(case)
    return families


def main() -> None:
    # Keys this module does not own (the comparison with ModSecurity's verdicts) stay.
    known: dict[str, object] = {
        k: v
        for k, v in json.loads(KNOWN.read_text(encoding="utf-8")).items()
        if not k.startswith("pl") and k != "pass_rates"
    }
    for level in LEVELS:
        known[f"pl{level}"] = dict(sorted(failures(level).items()))
    KNOWN.write_text(json.dumps(known, indent=1) + "\n", encoding="utf-8")
    summary: dict[str, object] = {}
    for level in LEVELS:
        summary[f"pl{level}"] = pass_rates(level, by_family())
        tally = Counter(v.split(":")[0] for v in load_known()[f"pl{level}"].values())
        print(f"PL{level}", summary[f"pl{level}"], dict(tally))
    known["pass_rates"] = summary
    KNOWN.write_text(json.dumps(known, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__" and "--write" in sys.argv:
    main()
