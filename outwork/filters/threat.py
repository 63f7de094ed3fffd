"""`threat_protection`: JSON and XML request bodies checked while they stream.

    policies: {api: {threat_protection: {
        json: {max_depth: 20, max_keys: 1000, max_string: 65536, max_array: 10000},
        xml: {max_depth: 20, max_size: 1MiB}}}}

The body is picked by its Content-Type: `application/json` and `*/*+json` go to the JSON
checker (`json_limits`), `application/xml`, `text/xml` and `*/*+xml` to the XML one
(`xml_limits`), when the policy names that kind; any other type passes unless
`other_types: refuse` (415). Each chunk is checked before it goes upstream (a JSON body
that comes whole, in one call, by `json_whole.check_whole`: the same verdicts at C speed),
and the first problem answers the client: 413 for a body over `max_size`, 400 for anything
else (a limit on the structure, or not JSON / not well-formed XML), counted as `threat_json`
or `threat_xml`, with the limit in the security event. An empty body passes (there is
nothing to parse).

A body the gateway cannot read is not let through unread: a compressed one (Content-Encoding
other than identity) of a checked type is refused with 415, and a request with two different
Content-Types (the gateway and the backend could each believe another) with 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from outwork.config.values import parse_size
from outwork.filters import FilterType, register
from outwork.filters.api import CONTINUE, Filter, Reply, RequestContext, Resume, Verdict
from outwork.filters.json_limits import JsonChecker, JsonLimits, JsonViolation
from outwork.filters.json_whole import check_whole
from outwork.filters.threat_spec import ThreatSpec
from outwork.filters.xml_limits import XmlChecker, XmlLimits, XmlViolation
from outwork.http.ascii import COMMA
from outwork.http.messages import Framing, RequestHead
from outwork.observe.refusals import Refusal

_JSON_TYPES: Final = frozenset({b"application/json"})
_XML_TYPES: Final = frozenset({b"application/xml", b"text/xml"})
_IDENTITY: Final = frozenset({b"", b"identity"})
# Module globals: reading an Enum member off its class is slow in 3.11.
_NO_BODY: Final = Framing.NONE
_THREAT_JSON: Final = Refusal.THREAT_JSON


# media_kind's answers for the few values clients send: a dict read per request is half the
# cost of an lru_cache call from compiled code (about 950 instructions). Emptied when full.
_MEDIA_KINDS: Final[dict[bytes, str]] = {}
MAX_MEDIA_KINDS: Final = 256


def media_kind(value: bytes) -> str:
    """`json`, `xml` or `other` for a Content-Type value."""
    kind = _MEDIA_KINDS.get(value)
    if kind is None:
        if len(_MEDIA_KINDS) >= MAX_MEDIA_KINDS:
            _MEDIA_KINDS.clear()
        kind = _MEDIA_KINDS[value] = _media_kind(value)
    return kind


def _media_kind(value: bytes) -> str:
    media = value.partition(b";")[0].strip(b" \t").lower()
    kind, slash, subtype = media.partition(b"/")
    if not slash or not kind or not subtype:
        return "other"
    if media in _JSON_TYPES or subtype.endswith(b"+json"):
        return "json"
    if media in _XML_TYPES or subtype.endswith(b"+xml"):
        return "xml"
    return "other"


def _body_headers(head: RequestHead) -> tuple[list[bytes], list[bytes]]:
    """The Content-Type and Content-Encoding values, in order, without the white space around
    them (as `messages.header_values`): a name of another length is not lower-cased."""
    types: list[bytes] = []
    encodings: list[bytes] = []
    for name, value in head.headers:
        size = len(name)
        if size == 12 and name.lower() == b"content-type":
            types.append(value.strip(b" \t"))
        elif size == 16 and name.lower() == b"content-encoding":
            encodings.append(value.strip(b" \t"))
    return types, encodings


@dataclass(frozen=True, slots=True)
class ThreatFilter(Filter):
    json: JsonLimits | None
    xml: XmlLimits | None
    refuse_other: bool

    @property
    def inspects_request_body(self) -> bool:
        return True

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        if head.framing is _NO_BODY or head.content_length == 0:
            return CONTINUE  # no body: nothing to inspect
        types, encodings = _body_headers(head)
        kind = "other"
        if types:
            # Two values, or a list in one (what proxies make of two headers): the gateway and
            # the backend could each believe another.
            first = types[0]
            # (A comma anywhere first: `in` an int is a memchr; most values hold none.)
            if (len(types) > 1 and len(set(types)) > 1) or (
                COMMA in first and COMMA in first.partition(b";")[0]
            ):
                detail = {"limit": "content_type", "message": "several Content-Type values"}
                return Reply(400, Refusal.BAD_REQUEST, detail=detail)
            kind = media_kind(first)
        # A JSON body's checker is made at its first chunk unless that one is the whole body.
        checker: JsonLimits | XmlChecker
        if kind == "json" and self.json is not None:
            checker, refusal = self.json, _THREAT_JSON
        elif kind == "xml" and self.xml is not None:
            checker, refusal = XmlChecker(self.xml), Refusal.THREAT_XML
        elif self.refuse_other:
            detail = {"limit": "other_types", "message": f"a {kind} body is not inspected"}
            return Reply(415, Refusal.THREAT_MEDIA_TYPE, detail=detail)
        else:
            return CONTINUE
        if encodings and any(coding.lower() not in _IDENTITY for coding in encodings):
            detail = {"limit": "content_encoding", "message": "a compressed body is not inspected"}
            return Reply(415, refusal, detail=detail)
        ctx.filter_state[id(self)] = checker
        return CONTINUE

    def on_request_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        checker = ctx.filter_state.get(id(self))
        if checker is None:
            return CONTINUE
        try:
            if checker.__class__ is JsonLimits:  # the first chunk of a JSON body
                if end:  # the whole body at once: checked at C speed (json_whole.py)
                    del ctx.filter_state[id(self)]
                    if chunk:  # an empty body passes: there is nothing to parse
                        check_whole(checker, chunk)
                    return CONTINUE
                checker = ctx.filter_state[id(self)] = JsonChecker(checker)
            if chunk:
                checker.feed(chunk)
            if end:
                del ctx.filter_state[id(self)]
                if checker.size:  # an empty body passes: there is nothing to parse
                    checker.finish()
        except (JsonViolation, XmlViolation) as exc:
            ctx.filter_state.pop(id(self), None)
            refusal = Refusal.THREAT_JSON if isinstance(exc, JsonViolation) else Refusal.THREAT_XML
            status = 413 if exc.limit == "max_size" else 400
            return Reply(status, refusal, detail={"limit": exc.limit, "message": exc.message})
        return CONTINUE


def build(spec: ThreatSpec) -> ThreatFilter:
    json_limits = xml_limits = None
    if spec.json is not None:
        j = spec.json
        max_size = None if j.max_size is None else parse_size(j.max_size)
        json_limits = JsonLimits(
            j.max_depth, j.max_keys, j.max_string, j.max_array, j.max_number, max_size
        )
    if spec.xml is not None:
        xml_limits = XmlLimits(spec.xml.max_depth, parse_size(spec.xml.max_size))
    return ThreatFilter(json_limits, xml_limits, spec.other_types == "refuse")


THREAT_PROTECTION: Final = register(FilterType("threat_protection", ThreatSpec, build))
