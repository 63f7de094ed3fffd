"""`threat_protection` as a filter, in process: which bodies it checks (by Content-Type), what
it answers (400, 413, 415 and the refusal counted), XML attacks refused while ordinary XML
passes, and the config it refuses."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.config.load import load_config
from outwork.filters import CONTINUE, Reply
from outwork.filters import threat as threat_module
from outwork.filters.threat import (
    MAX_MEDIA_KINDS,
    ThreatFilter,
    ThreatSpec,
    _body_headers,
    build,
    media_kind,
)
from outwork.filters.xml_limits import XmlChecker, XmlLimits, XmlViolation
from outwork.http.messages import Framing, header_values
from outwork.observe.refusals import Refusal
from tests.filters.context import FakeContext, head, no_resume
from tests.proxy.test_filters import BASE, _problems

SPEC = {"json": {"max_depth": 3, "max_size": "1KiB"}, "xml": {"max_depth": 3, "max_size": 512}}


def threat(spec: dict[str, object] = SPEC) -> ThreatFilter:
    return build(msgspec.convert(spec, ThreatSpec, strict=True))


def run(
    f: ThreatFilter,
    content_type: bytes | None,
    *chunks: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> object:
    """The verdict for a request with this body, fed chunk by chunk (the last one ends it)."""
    ctx = FakeContext()
    headers = ([(b"Content-Type", content_type)] if content_type else []) + (extra or [])
    verdict = f.on_request_head(ctx, head(headers=headers), no_resume)
    if verdict is not CONTINUE:
        return verdict
    for i, chunk in enumerate(chunks):
        verdict = f.on_request_body(ctx, chunk, i == len(chunks) - 1, no_resume)
        if verdict is not CONTINUE:
            assert not ctx.filter_state  # nothing kept after a refusal
            return verdict
    assert not ctx.filter_state  # nothing kept after the body
    return verdict


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"application/json", "json"),
        (b"Application/JSON; charset=utf-8", "json"),
        (b"application/vnd.api+json", "json"),
        (b"application/problem+json ;x=y", "json"),
        (b"application/xml", "xml"),
        (b"text/xml; charset=iso-8859-1", "xml"),
        (b"image/svg+xml", "xml"),
        (b"text/plain", "other"),
        (b"application/jsonx", "other"),
        (b"json", "other"),
        (b"", "other"),
    ],
)
def test_media_kind(value, kind):
    assert media_kind(value) == kind


def test_media_kind_answers_the_same_past_what_it_remembers():
    """More distinct Content-Type values than it keeps answers: each is worked out again, and
    what a peer sends never grows the memory past its cap."""
    for i in range(600):
        assert media_kind(b"application/v%d+json" % i) == "json"
        assert media_kind(b"text/v%d" % i) == "other"
        assert len(threat_module._MEDIA_KINDS) <= MAX_MEDIA_KINDS
    assert media_kind(b"application/json") == "json"


def test_json_within_its_limits_passes_in_any_pieces():
    f = threat()
    assert run(f, b"application/json", b'{"a": [1, {"b": ', b'"c"}]}') is CONTINUE
    assert run(f, b"application/merge-patch+json", b"[]") is CONTINUE


def test_json_over_a_structure_limit_is_400_threat_json_naming_the_limit():
    got = run(threat(), b"application/json", b'{"a": [[[', b"1]]]}")
    assert isinstance(got, Reply)
    assert (got.status, got.refusal, got.detail["limit"]) == (400, Refusal.THREAT_JSON, "max_depth")


def test_json_that_is_not_json_is_400():
    got = run(threat(), b"application/json", b"{'a': 1}")
    assert isinstance(got, Reply) and (got.status, got.detail["limit"]) == (400, "syntax")


def test_a_json_body_over_max_size_is_413():
    got = run(threat(), b"application/json", b"[" + b"1," * 400, b"1," * 200 + b"1]")
    assert isinstance(got, Reply)
    assert (got.status, got.refusal, got.detail["limit"]) == (413, Refusal.THREAT_JSON, "max_size")


def test_an_empty_body_passes():
    assert run(threat(), b"application/json", b"") is CONTINUE
    assert run(threat(), b"application/xml", b"") is CONTINUE


def test_a_request_without_a_body_is_not_looked_at():
    ctx = FakeContext()
    h = head(headers=[(b"content-type", b"application/json")], framing=Framing.NONE)
    assert threat().on_request_head(ctx, h, no_resume) is CONTINUE
    assert not ctx.filter_state
    strict = threat({**SPEC, "other_types": "refuse"})
    assert strict.on_request_head(ctx, head(content_length=0), no_resume) is CONTINUE
    assert not ctx.filter_state


def test_other_types_pass_unless_refused():
    assert run(threat(), b"text/plain", b"{{{{") is CONTINUE
    assert run(threat(), None, b"{{{{") is CONTINUE
    strict = threat({**SPEC, "other_types": "refuse"})
    for content_type in (b"text/plain", None):
        got = run(strict, content_type, b"x")
        assert isinstance(got, Reply) and (got.status, got.refusal) == (
            415,
            Refusal.THREAT_MEDIA_TYPE,
        )
    # A kind the policy does not name is an "other" type too.
    got = run(threat({"json": {}, "other_types": "refuse"}), b"application/xml", b"<a/>")
    assert isinstance(got, Reply) and got.status == 415


def test_a_compressed_body_of_a_checked_type_is_not_let_through_unread():
    got = run(threat(), b"application/json", b"\x1f\x8b", extra=[(b"Content-Encoding", b"gzip")])
    assert isinstance(got, Reply) and (got.status, got.refusal) == (415, Refusal.THREAT_JSON)
    ok = run(threat(), b"application/json", b"{}", extra=[(b"content-encoding", b"identity")])
    assert ok is CONTINUE


def test_two_different_content_types_are_refused():
    extra = [(b"Content-Type", b"text/plain")]
    got = run(threat(), b"application/json", b"{}", extra=extra)
    assert isinstance(got, Reply) and (got.status, got.refusal) == (400, Refusal.BAD_REQUEST)
    got = run(threat(), b"text/plain, application/json", b"{}")
    assert isinstance(got, Reply) and (got.status, got.refusal) == (400, Refusal.BAD_REQUEST)
    # The same value twice is one value.
    assert (
        run(threat(), b"application/json", b"{}", extra=[(b"content-type", b"application/json")])
        is CONTINUE
    )


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<foo>&xxe;</foo>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY % remote SYSTEM "http://127.0.0.1:1/evil.dtd"> %remote;]>
<foo/>"""
EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE foo SYSTEM "http://127.0.0.1:1/foo.dtd"><foo/>'
ORDINARY = b"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet href="s.css"?>
<order id="7" xmlns="urn:example">
 <item sku="a&amp;b">caf\xc3\xa9 &#233; &lt;3</item><!-- note --><![CDATA[<x>]]>
</order>"""


@pytest.mark.parametrize(
    ("doc", "limit"),
    [
        (BILLION_LAUGHS, "dtd"),
        (XXE, "dtd"),
        (PARAMETER_ENTITY, "dtd"),
        (EXTERNAL_DTD, "dtd"),
        (b"<a><b><c><d/></c></b></a>", "max_depth"),
        (b"<a>&undefined;</a>", "syntax"),
        (b"<a><b></a>", "syntax"),
        (b"<a/><b/>", "syntax"),
        (b"<a>" + b"x" * 600 + b"</a>", "max_size"),
    ],
)
def test_xml_attacks_and_malformed_xml_are_refused(doc, limit):
    for pieces in ([doc], [doc[i : i + 1] for i in range(len(doc))]):
        got = run(threat(), b"application/xml", *pieces)
        assert isinstance(got, Reply) and got.refusal is Refusal.THREAT_XML
        assert got.detail["limit"] == limit
        assert got.status == (413 if limit == "max_size" else 400)


def test_ordinary_xml_passes_in_any_pieces():
    for pieces in ([ORDINARY], [ORDINARY[i : i + 3] for i in range(0, len(ORDINARY), 3)]):
        assert run(threat(), b"text/xml", *pieces) is CONTINUE
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><a>\u00e9</a>'.encode("utf-16")
    assert run(threat(), b"application/xml", utf16) is CONTINUE


def test_an_xml_checker_that_refused_stays_refused():
    checker = XmlChecker(XmlLimits())
    with pytest.raises(XmlViolation):
        checker.feed(XXE)
    with pytest.raises(XmlViolation):
        checker.finish()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("policies: {p: {threat_protection: {}}}\n", "give json, xml or both"),
        ("policies: {p: {threat_protection: {json: {max_depth: 0}}}}\n", "threat_protection"),
        ("policies: {p: {threat_protection: {json: {max_size: 12parsecs}}}}\n", "invalid size"),
        ("policies: {p: {threat_protection: {xml: {max_size: -1}}}}\n", "threat_protection"),
        ("policies: {p: {threat_protection: {xml: {dtd: true}}}}\n", "dtd"),
        ("policies: {p: {threat_protection: {json: {}, other_types: maybe}}}\n", "other_types"),
    ],
)
def test_the_config_refuses(tmp_path, extra, expected):
    found = _problems(tmp_path, BASE + extra)
    assert any(expected in problem for problem in found), found


def test_the_config_compiles_threat_protection_after_headers(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE
        + "policies: {p: {threat_protection: {json: {max_keys: 5}, xml: {max_size: 2KiB}},"
        + " headers: {remove: [Server]}}}\n"
    )
    filters = load_config(path).routes[0].filters
    assert [type(f).__name__ for f in filters] == ["HeadersFilter", "ThreatFilter"]
    f = filters[1]
    assert isinstance(f, ThreatFilter) and f.inspects_request_body
    assert f.json is not None and f.json.max_keys == 5 and f.json.max_depth == 20
    assert f.xml is not None and f.xml.max_size == 2048


header_names = st.sampled_from(
    [b"Content-Type", b"content-type", b"CONTENT-ENCODING", b"Content-Encoding", b"Content-Length"]
    + [b"Content-Typo", b"X-Content-Type", b"Host", b"content-encodings"]
)
header_values_sent = st.sampled_from([b"application/json", b" gzip ", b"\ttext/xml; a=b", b""])


@given(st.lists(st.tuples(header_names, header_values_sent), max_size=8))
def test_the_body_headers_are_those_header_values_finds(headers: list[tuple[bytes, bytes]]) -> None:
    """The filter's own scan (names of other lengths not lower-cased) against the general one."""
    found = header_values(headers, frozenset({b"content-type", b"content-encoding"}))
    assert _body_headers(head(headers=headers)) == (
        found.get(b"content-type", []),
        found.get(b"content-encoding", []),
    )
