"""Replay the kept corpus of the WAF fuzz harness (fuzz/fuzz_waf.py): transformations on any
bytes (decoders never grow a value), regexes from any text (ValueError or a compiled regex the
scan never misses), operator arguments from any text. No atheris needed."""

from __future__ import annotations

import pytest

from tests.fuzz_replay import Corpus

CORPUS = Corpus("waf", "fuzz_waf", max_bytes=512 * 1024)
test_corpus_input_replays = CORPUS.replay_test()
test_corpus_is_kept_and_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_corpus_covers_every_reader() -> None:
    assert len(CORPUS.files()) > 40


def test_harness_checks_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness is not vacuous: a scan that missed a matching regex would fail it."""
    module = CORPUS.harness()
    module.TestOneInput(b"\x04(?i)select\x00x SELECT y")

    class BlindScan:
        def __init__(self, patterns: list[str]) -> None:
            pass

        def set_candidates(self, value: bytes) -> set[int]:
            return set()

        def prefilter_candidates(self, value: bytes) -> set[int]:
            return set()

    monkeypatch.setattr(module, "PatternSet", BlindScan)
    with pytest.raises(AssertionError):
        module.TestOneInput(b"\x04(?i)select\x00x SELECT y")
