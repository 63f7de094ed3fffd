"""Replay the kept corpus of the HTTP response fuzz harness (fuzz/fuzz_http_response.py), which
reads each upstream response in one read and in two and checks that only
UpstreamProtocolError is raised, both readings agree and no hop-by-hop line is forwarded."""

from __future__ import annotations

import pytest

from outwork.http.messages import Framing
from tests.fuzz_replay import Corpus

CORPUS = Corpus("http_response", "fuzz_http_response")
test_corpus_input_replays = CORPUS.replay_test()
test_corpus_is_kept_and_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_harness_sees_the_events() -> None:
    """The harness is not vacuous: a chunked response split mid-chunk reads whole, with the
    header its Connection line names cut out."""
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"
        b"Server: s\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    events, error = CORPUS.harness().read(data, 90, 0)
    assert error == ""
    assert events[0][2] == b"Server: s\r\n" and events[1:] == [b"hello", ("end", True)]


def test_harness_catches_a_forwarded_hop_by_hop_line() -> None:
    """The invariant the harness checks fails on a head that kept a framing line."""
    sink = CORPUS.harness().Sink()
    head = CORPUS.harness().ResponseHead(
        200, b"OK", b"Transfer-Encoding: chunked\r\n", Framing.CHUNKED, -1
    )
    with pytest.raises(AssertionError):
        sink.on_response_head(head)
