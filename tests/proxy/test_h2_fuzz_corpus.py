"""Replay the kept HTTP/2 fuzz corpus (`fuzz/corpus/h2/`) through the harness the atheris
fuzzer runs (`fuzz/fuzz_h2.py`): only the session's own refusals may come out of it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from outwork.front import h2_guard

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "h2"


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_h2")


def corpus() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file())


@pytest.mark.parametrize("path", corpus(), ids=[p.name for p in corpus()])
def test_corpus_file_replays_without_a_crash(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


def test_corpus_has_seeds_and_stays_small() -> None:
    files = corpus()
    assert any(p.name.startswith("seed-") for p in files)
    assert len(files) < 100 and sum(p.stat().st_size for p in files) < 256 * 1024


def test_harness_imports_without_atheris() -> None:
    assert not hasattr(harness(), "atheris"), "atheris must be imported only under __main__"


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A harness that swallowed everything would make the replay (and the fuzzer) useless."""

    def broken(self: h2_guard.FrameGuard, data: bytes, now: float) -> None:
        raise IndexError("stands for a guard bug")

    monkeypatch.setattr(h2_guard.FrameGuard, "feed", broken)
    with pytest.raises(IndexError):
        harness().TestOneInput((CORPUS / "seed-client-traffic").read_bytes())


def test_the_seeds_reach_the_defences() -> None:
    """The attack seeds are refused by the guard, not by chance elsewhere."""
    module = harness()
    refused: list[str] = []
    real = h2_guard.FrameGuard.feed

    def watched(self: h2_guard.FrameGuard, data: bytes, now: float) -> None:
        try:
            real(self, data, now)
        except h2_guard.Flood as flood:
            refused.append(flood.attack)
            raise

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(h2_guard.FrameGuard, "feed", watched)
        for name in ("seed-continuation-flood", "seed-rapid-reset", "seed-ping-flood"):
            module.TestOneInput((CORPUS / name).read_bytes())
    assert refused == ["continuation_flood", "rapid_reset", "ping_flood"]
