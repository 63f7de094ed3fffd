"""Replay the kept corpus of fuzz/fuzz_xml_limits.py (without atheris)."""

from __future__ import annotations

import pytest

from outwork.filters.xml_limits import XmlChecker
from tests.fuzz_replay import Corpus, crash

CORPUS = Corpus("xml_limits", "fuzz_xml_limits", max_files=100, max_bytes=512 * 1024)
test_corpus_file_replays_without_a_crash = CORPUS.replay_test()
test_corpus_has_seeds_and_stays_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_an_encoding_nobody_knows_is_refused_not_raised() -> None:
    """Found by the fuzzer: pyexpat asks Python's codecs for an encoding it lacks, and their
    LookupError came out of the checker (a 500 in the gateway)."""
    harness = CORPUS.harness()
    body = b'<?xml version="1.0" encoding="UTF-26"?><a/>'
    assert harness.verdict(harness.PROFILES[0], [body]) == "syntax"


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(XmlChecker, "feed", crash)
    with pytest.raises(IndexError):
        CORPUS.run("seed-ordinary-0")
