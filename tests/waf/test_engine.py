"""The engine's SecLang semantics on small rule sets, and CRS as shipped on a few requests:
what a user of the WAF sees is which requests are refused and which rules said so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.waf import engine, fastpath
from outwork.waf.engine import Setup, Transaction, Waf, WafLoadError
from outwork.waf.request import WafRequest
from outwork.waf.transforms import pipeline

HEADERS = [(b"Host", b"localhost"), (b"User-Agent", b"curl/8"), (b"Accept", b"*/*")]


def request(target: bytes, body: bytes = b"", content_type: bytes = b"") -> WafRequest:
    headers = list(HEADERS)
    if content_type:
        headers.append((b"Content-Type", content_type))
    if body:
        headers.append((b"Content-Length", str(len(body)).encode()))
    method = b"POST" if body else b"GET"
    return WafRequest(method, target, b"HTTP/1.1", headers, "192.0.2.9", 4000, body)


def run(waf: Waf, req: WafRequest) -> Transaction:
    transaction = waf.transaction(req)
    transaction.run_phase(1)
    transaction.run_phase(2)
    return transaction


def rules_dir(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.conf").write_text(text)
    return folder


def matched(transaction: Transaction) -> list[int]:
    return [m.id for m in transaction.matches if m.id != 900990]


@pytest.fixture(scope="module")
def crs() -> Waf:
    return Waf.load(setup=Setup(paranoia_level=1))


def test_crs_blocks_attacks_and_passes_benign_requests(crs: Waf) -> None:
    sqli = run(crs, request(b"/search", b"q=1' or '1'='1", b"application/x-www-form-urlencoded"))
    assert sqli.would_interrupt is not None and sqli.would_interrupt.status == 403
    assert 942100 in matched(sqli) and sqli.anomaly_score >= 5
    xss = run(crs, request(b"/?x=%3Cscript%3Ealert(1)%3C/script%3E"))
    assert xss.would_interrupt is not None and 941100 in matched(xss)
    traversal = run(crs, request(b"/files?name=../../../../etc/passwd"))
    assert traversal.would_interrupt is not None and 930100 in matched(traversal)
    json_rce = run(crs, request(b"/api", b'{"cmd": ";cat /etc/passwd"}', b"application/json"))
    assert json_rce.would_interrupt is not None
    benign = run(crs, request(b"/api/orders?page=2&sort=date"))
    assert benign.would_interrupt is None and benign.anomaly_score == 0
    form = run(
        crs, request(b"/login", b"user=alice&password=s3cret", b"application/x-www-form-urlencoded")
    )
    assert form.would_interrupt is None


def test_share_of_rules_fully_evaluated_is_reported(crs: Waf) -> None:
    stats = run(crs, request(b"/api/orders?page=2&sort=date")).stats
    assert stats.rules_reached > 100
    assert 0 < stats.rx_full < stats.rx_reached  # the prefilter spared most regexes


def test_chain_skip_after_setvar_and_macros(tmp_path: Path) -> None:
    folder = rules_dir(
        tmp_path,
        """
SecRule ARGS:skip "@streq yes" "id:1,phase:1,pass,nolog,skipAfter:END"
SecRule ARGS:a "@rx ^(\\d+)$" "id:2,phase:1,pass,capture,setvar:tx.n=%{tx.1},chain"
    SecRule TX:n "@gt 10" "setvar:tx.score=+7"
SecMarker END
SecRule TX:score "@ge 5" "id:3,phase:1,deny,status:406,msg:'score %{tx.score}'"
""",
    )
    waf = Waf.load(folder)
    hit = run(waf, request(b"/?a=42"))
    assert hit.would_interrupt is not None and hit.would_interrupt.status == 406
    assert matched(hit) == [2, 3] and hit.matches[-1].msg == "score 7"
    assert run(waf, request(b"/?a=5")).would_interrupt is None  # the chain's link fails
    assert run(waf, request(b"/?a=42&skip=yes")).would_interrupt is None  # skipped over


def test_each_macro_reads_its_own_variable(tmp_path: Path) -> None:
    """Macros naming different headers, expanded one after the other, each give their own
    header (CRS's 943110 compares a Referer with `%{request_headers.host}`)."""
    names = [f"x-h{n}" for n in range(20)]
    rules = "".join(
        f'SecAction "id:{n + 1},phase:1,pass,nolog,setvar:tx.{name}=%{{request_headers.{name}}}"\n'
        for n, name in enumerate(names)
    )
    waf = Waf.load(rules_dir(tmp_path, rules))
    headers = [*HEADERS, *((name.encode(), name.encode() + b"-value") for name in names)]
    transaction = run(waf, WafRequest(b"GET", b"/", b"HTTP/1.1", headers, "192.0.2.9", 4000, b""))
    assert {name: transaction.vars.tx[name] for name in names} == {
        name: name.encode() + b"-value" for name in names
    }


def test_counting_exclusion_and_runtime_ctl(tmp_path: Path) -> None:
    folder = rules_dir(
        tmp_path,
        """
SecRule &ARGS "@gt 2" "id:10,phase:1,pass,setvar:tx.many=1"
SecRule REQUEST_FILENAME "@beginsWith /open" "id:11,phase:1,pass,nolog,ctl:ruleRemoveById=13"
SecRule REQUEST_FILENAME "@beginsWith /quiet" "id:12,phase:1,pass,nolog,\\
    ctl:ruleRemoveTargetById=13;ARGS:q"
SecRule ARGS|!ARGS:safe "@contains evil" "id:13,phase:2,deny"
""",
    )
    waf = Waf.load(folder)
    assert run(waf, request(b"/x?q=evil")).would_interrupt is not None
    assert run(waf, request(b"/x?safe=evil")).would_interrupt is None  # !ARGS:safe
    assert run(waf, request(b"/open?q=evil")).would_interrupt is None  # removed by id
    assert run(waf, request(b"/quiet?q=evil")).would_interrupt is None  # target removed
    assert run(waf, request(b"/quiet?r=evil")).would_interrupt is not None  # only ARGS:q
    assert run(waf, request(b"/x?a=1&b=2&c=3")).vars.tx.get("many") == b"1"


EXCLUDING_RULES = """
SecRule ARGS|!ARGS:keep|!ARGS:/^id_/|!REQUEST_HEADERS "@streq hit" \\
    "id:20,phase:2,pass,nolog,setvar:tx.hits=+1"
SecRule &ARGS|!ARGS:keep|!ARGS:/^id_/ "@ge 0" \\
    "id:21,phase:2,pass,nolog,setvar:tx.count=%{MATCHED_VAR}"
"""
ARG_NAMES = st.lists(st.sampled_from(["keep", "KEEP", "id_", "ID_x", "x_id_", "a", "Keep2"]))


@pytest.fixture(scope="module")
def excluding(tmp_path_factory: pytest.TempPathFactory) -> Waf:
    return Waf.load(rules_dir(tmp_path_factory.mktemp("excluding"), EXCLUDING_RULES))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ARG_NAMES.map("".join), st.sampled_from(["hit", "miss"])), max_size=8))
def test_exclusions_take_out_the_keys_they_name(
    excluding: Waf, args: list[tuple[str, str]]
) -> None:
    """`!ARGS:key` takes out that key whatever its case, `!ARGS:/regex/` the keys the regex
    finds (case-insensitively), an exclusion of another collection nothing: from the values a
    rule reads and from what `&` counts."""
    query = "&".join(f"{name}={value}" for name, value in args)
    transaction = run(excluding, request(b"/x?" + query.encode()))
    kept = [
        (name, value)
        for name, value in args
        if name.lower() != "keep" and not re.search("^id_", name, re.I)
    ]
    hits = sum(value == "hit" for _, value in kept)
    assert transaction.vars.tx.get("hits") == (str(hits).encode() if hits else None)
    assert transaction.vars.tx.get("count") == str(len(kept)).encode()


def test_body_processors_feed_args(tmp_path: Path) -> None:
    folder = rules_dir(
        tmp_path, 'SecRule ARGS_POST|XML:/*|FILES "@contains evil" "id:1,phase:2,deny"'
    )
    waf = Waf.load(folder)
    boundary = b"XyZ"
    multipart = (
        b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="evil.php"\r\n\r\n'
        b"data\r\n--XyZ--\r\n"
    )
    for body, content_type in [
        (b"a=evil", b"application/x-www-form-urlencoded"),
        (b'{"a": {"b": ["evil"]}}', b"application/json"),
        (b"<a><b>evil</b></a>", b"text/xml"),
        (multipart, b"multipart/form-data; boundary=" + boundary),
    ]:
        assert run(waf, request(b"/", body, content_type)).would_interrupt is not None, body
    assert matched(run(waf, request(b"/", b"a=good", b"application/x-www-form-urlencoded"))) == []


def test_detection_only_decides_but_does_not_interrupt(tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, 'SecRule ARGS "@contains evil" "id:1,phase:1,deny"')
    transaction = Waf.load(folder, Setup(detect_only=True)).transaction(request(b"/?a=evil"))
    assert transaction.run_phase(1) is None
    assert transaction.would_interrupt is not None


def test_exclusion_file_removes_a_rule_for_one_path_only(tmp_path: Path) -> None:
    exclusion = tmp_path / "exclusions.conf"
    exclusion.write_text(
        'SecRule REQUEST_FILENAME "@beginsWith /api/upload" '
        '"id:1000,phase:1,pass,nolog,ctl:ruleRemoveById=942100"\n'
    )
    waf = Waf.load(setup=Setup(paranoia_level=1), exclusions=[exclusion])
    body = b"q=1' or '1'='1"
    form = b"application/x-www-form-urlencoded"
    elsewhere = run(waf, request(b"/api/search", body, form))
    assert 942100 in matched(elsewhere) and elsewhere.would_interrupt is not None
    upload = run(waf, request(b"/api/upload", body, form))
    assert 942100 not in matched(upload) and upload.would_interrupt is None


def test_load_errors_name_file_and_line(tmp_path: Path) -> None:
    folder = rules_dir(
        tmp_path, 'SecRule ARGS "@rx a" "id:1,phase:1,pass"\nSecRule ARGS "@rx (" "id:2"\n'
    )
    with pytest.raises(WafLoadError, match=r"rules\.conf:2: "):
        Waf.load(folder)


def test_macros_of_two_headers_each_show_their_own(tmp_path: Path) -> None:
    folder = rules_dir(
        tmp_path,
        """
SecRule REQUEST_METHOD "@streq GET" "id:1,phase:1,pass,\\
    msg:'%{REQUEST_HEADERS.host} %{REQUEST_HEADERS.user-agent} %{REQUEST_HEADERS.accept}'"
""",
    )
    transaction = run(Waf.load(folder), request(b"/"))
    assert transaction.matches[-1].msg == "localhost curl/8 */*"


def test_a_ctl_that_forces_the_body_variable_is_seen_by_prefiltered_rules(tmp_path: Path) -> None:
    folder = rules_dir(
        tmp_path,
        """
SecRule REQUEST_BODY "@rx evil\\d" "id:1,phase:2,pass,msg:'before'"
SecRule REQUEST_FILENAME "@streq /force" "id:2,phase:2,pass,nolog,\\
    ctl:forceRequestBodyVariable=On"
SecRule REQUEST_BODY "@rx evil\\d" "id:3,phase:2,deny"
""",
    )
    waf = Waf.load(folder)
    forced = run(waf, request(b"/force", b'{"a": "evil7"}', b"application/json"))
    assert matched(forced) == [2, 3] and forced.would_interrupt is not None
    assert matched(run(waf, request(b"/other", b'{"a": "evil7"}', b"application/json"))) == []


def test_multi_match_sees_the_value_before_and_after_each_transformation(
    tmp_path: Path,
) -> None:
    folder = rules_dir(
        tmp_path,
        """
SecRule ARGS "@rx ^a%41$" "id:1,phase:1,pass,t:none,t:urlDecode,t:lowercase,multiMatch"
SecRule ARGS "@rx ^aa$" "id:2,phase:1,pass,t:none,t:urlDecode,t:lowercase,multiMatch"
SecRule ARGS "@rx ^aA$" "id:3,phase:1,pass,t:none,t:urlDecode,t:lowercase,multiMatch"
SecRule ARGS "@rx ^a%41$" "id:4,phase:1,pass,t:none,t:urlDecode,t:lowercase"
""",
    )
    waf = Waf.load(folder)
    # ARGS holds a%41: it matches as it is, url-decoded (aA) and lowercased (aa); rule 4
    # sees only the end of its pipeline.
    assert matched(run(waf, request(b"/?x=a%2541"))) == [1, 2, 3]
    assert matched(run(waf, request(b"/?x=aA"))) == [2, 3]  # as sent, then lowercased
    assert matched(run(waf, request(b"/?x=AA"))) == [2]


def test_values_kept_across_requests_stay_within_their_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SHARED_ENTRIES", 8)
    folder = rules_dir(
        tmp_path,
        'SecRule ARGS "@rx evil" "id:1,phase:1,deny,t:none,t:urlDecodeUni,t:lowercase"',
    )
    waf = Waf.load(folder)
    for n in range(40):  # every request with values never seen before
        assert run(waf, request(b"/?a=%25" + str(n).encode() + b"+b")).would_interrupt is None
        assert len(waf.shared_transforms) <= 8 and len(waf.shared_candidates) <= 8
    assert run(waf, request(b"/?a=EVIL")).would_interrupt is not None  # still decides


def test_a_memoized_pipeline_stays_within_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "MEMO_ENTRIES", 4)
    names = ["urldecodeuni", "base64decode", "lowercase"]
    memoized = fastpath.segmented(names, pipeline(names))
    for n in range(20):
        value = b"QUJD" + str(n).encode()
        assert memoized(value) == pipeline(names)(value)
    assert isinstance(memoized, fastpath.Memoized) and 0 < len(memoized.memo) <= 4
