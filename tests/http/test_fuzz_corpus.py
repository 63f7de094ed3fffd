"""Replay the kept corpus of the HTTP request fuzz harness (fuzz/fuzz_http_request.py), which
reads each input in one read and in two, routes every head and checks that only HTTPError is
raised and that both readings agree. No atheris needed."""

from __future__ import annotations

from tests.fuzz_replay import Corpus

CORPUS = Corpus("http_request", "fuzz_http_request", seeds=False)
test_corpus_input_replays = CORPUS.replay_test()
test_corpus_is_kept_and_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_harness_sees_the_events() -> None:
    """The harness is not vacuous: a split upgrade request and its successor both read."""
    data = (
        b"GET /u HTTP/1.1\r\nHost: b.example\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        b"GET /v HTTP/1.1\r\nHost: z\r\n\r\n"
    )
    events, status = CORPUS.harness().read(data, 20)
    assert status == 0 and [e[1] for e in events if isinstance(e, tuple)] == [b"/u", b"/v"]
