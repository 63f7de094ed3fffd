"""Header lookups on parsed heads (outwork/http/messages.py)."""

from __future__ import annotations

from outwork.http.messages import header_values


def test_header_values_groups_the_named_headers_in_order() -> None:
    headers = [
        (b"Content-Type", b" application/json\t"),
        (b"Accept", b"*/*"),
        (b"content-type", b"text/xml"),
        (b"CONTENT-ENCODING", b"gzip"),
    ]
    found = header_values(headers, frozenset({b"content-type", b"content-encoding", b"origin"}))
    assert found == {
        b"content-type": [b"application/json", b"text/xml"],
        b"content-encoding": [b"gzip"],
    }


def test_header_values_keeps_inner_white_space_and_empty_values() -> None:
    found = header_values([(b"Origin", b"  "), (b"Origin", b"a b")], frozenset({b"origin"}))
    assert found == {b"origin": [b"", b"a b"]}
