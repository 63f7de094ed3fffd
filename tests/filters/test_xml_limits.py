"""The streaming XML checker's properties: generated documents pass however they are cut, one
level deeper than `max_depth` is refused, a DOCTYPE anywhere before the root is refused, and
any bytes at all give the same verdict whole and in pieces, with no exception but
`XmlViolation`."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.filters.xml_limits import XmlChecker, XmlLimits, XmlViolation
from tests.filters.test_json_limits import cut

NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.-]{0,8}", fullmatch=True)
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=20,
)
Element = tuple[str, dict[str, str], str, list[Any]]  # name, attributes, text, children
ELEMENTS: st.SearchStrategy[Element] = st.recursive(
    st.tuples(NAMES, st.dictionaries(NAMES, TEXT, max_size=3), TEXT, st.just([])),
    lambda children: st.tuples(
        NAMES, st.dictionaries(NAMES, TEXT, max_size=3), TEXT, st.lists(children, max_size=4)
    ),
    max_leaves=20,
)


def render(element: Element) -> str:
    name, attributes, text, children = element
    attrs = "".join(f" {key}={quoteattr(value)}" for key, value in attributes.items())
    inner = escape(text) + "".join(render(child) for child in children)
    return f"<{name}{attrs}>{inner}</{name}>"


def depth(element: Element) -> int:
    return 1 + max((depth(child) for child in element[3]), default=0)


def verdict(limits: XmlLimits, pieces: list[bytes]) -> str:
    checker = XmlChecker(limits)
    try:
        for piece in pieces:
            checker.feed(piece)
        checker.finish()
    except XmlViolation as exc:
        return exc.limit
    return "ok"


@settings(max_examples=200, deadline=None)
@given(ELEMENTS, st.booleans(), st.lists(st.integers(0, 10**6), max_size=6))
def test_a_document_within_its_limits_passes_however_it_is_cut(element, declared, points):
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n' if declared else "") + render(element)
    data = doc.encode()
    limits = XmlLimits(max_depth=depth(element), max_size=len(data))
    assert verdict(limits, [data]) == "ok"
    assert verdict(limits, cut(data, points)) == "ok"
    if depth(element) > 1:
        lowered = XmlLimits(max_depth=depth(element) - 1, max_size=None)
        assert verdict(lowered, cut(data, points)) == "max_depth"
    assert verdict(XmlLimits(max_size=len(data) - 1), [data]) == "max_size"


@settings(max_examples=200, deadline=None)
@given(ELEMENTS, NAMES, st.lists(st.integers(0, 10**6), max_size=6))
def test_a_doctype_is_refused_whatever_it_declares(element, name, points):
    data = (f"<!DOCTYPE {name}>" + render(element)).encode()
    assert verdict(XmlLimits(max_depth=1000), cut(data, points)) == "dtd"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80), st.lists(st.integers(0, 80), max_size=4))
def test_any_bytes_give_one_verdict_whole_and_in_pieces(data, points):
    limits = XmlLimits(max_depth=3, max_size=64)
    whole = verdict(limits, [data])
    assert (verdict(limits, cut(data, points)) == "ok") == (whole == "ok")
