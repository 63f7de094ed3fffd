"""Replay the kept corpus of fuzz/fuzz_json_limits.py (without atheris)."""

from __future__ import annotations

import pytest

from outwork.filters.json_limits import JsonChecker
from tests.fuzz_replay import Corpus, crash

CORPUS = Corpus("json_limits", "fuzz_json_limits", max_files=100, max_bytes=512 * 1024)
test_corpus_file_replays_without_a_crash = CORPUS.replay_test()
test_corpus_has_seeds_and_stays_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JsonChecker, "feed", crash)
    with pytest.raises(IndexError):
        CORPUS.run("seed-object-compact-0")
