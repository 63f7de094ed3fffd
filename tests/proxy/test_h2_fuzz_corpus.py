"""Replay the kept HTTP/2 fuzz corpus (`fuzz/corpus/h2/`) through the harness the atheris
fuzzer runs (`fuzz/fuzz_h2.py`): only the session's own refusals may come out of it."""

from __future__ import annotations

import pytest

from outwork.front import h2_guard
from tests.fuzz_replay import Corpus, crash

CORPUS = Corpus("h2", "fuzz_h2", max_files=100, max_bytes=256 * 1024)
test_corpus_file_replays_without_a_crash = CORPUS.replay_test()
test_corpus_has_seeds_and_stays_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h2_guard.FrameGuard, "feed", crash)
    with pytest.raises(IndexError):
        CORPUS.run("seed-client-traffic")


def test_the_seeds_reach_the_defences(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack seeds are refused by the guard, not by chance elsewhere."""
    refused: list[str] = []
    real = h2_guard.FrameGuard.feed

    def watched(self: h2_guard.FrameGuard, data: bytes, now: float) -> None:
        try:
            real(self, data, now)
        except h2_guard.Flood as flood:
            refused.append(flood.attack)
            raise

    monkeypatch.setattr(h2_guard.FrameGuard, "feed", watched)
    for name in ("seed-continuation-flood", "seed-rapid-reset", "seed-ping-flood"):
        CORPUS.run(name)
    assert refused == ["continuation_flood", "rapid_reset", "ping_flood"]
