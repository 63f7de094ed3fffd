"""Replay the kept corpus of fuzz/fuzz_scan_wire.py (the scanner's readers) in every run."""

from __future__ import annotations

import pytest

from outwork.scan import wire
from tests.fuzz_replay import Corpus, crash

CORPUS = Corpus("scan_wire", "fuzz_scan_wire", max_files=200, max_bytes=512 * 1024)
test_corpus_file_replays_without_a_crash = CORPUS.replay_test()
test_corpus_has_seeds_and_stays_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire.RecordReader, "feed", crash)
    with pytest.raises(IndexError):
        CORPUS.harness().TestOneInput(b"\x00\x00" + bytes(16))
