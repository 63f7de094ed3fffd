"""Replay the kept corpus of the WAF fuzz harness (fuzz/fuzz_waf.py): transformations on any
bytes (decoders never grow a value), regexes from any text (ValueError or a compiled regex the
scan never misses), operator arguments from any text. No atheris needed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "waf"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file()) if CORPUS.is_dir() else []


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_waf")


def test_corpus_is_kept_and_small() -> None:
    assert 40 < len(FILES) <= 300
    assert sum(p.stat().st_size for p in FILES) <= 512 * 1024


@pytest.mark.parametrize("path", FILES, ids=[p.name[:12] for p in FILES])
def test_corpus_input_replays(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


def test_harness_checks_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness is not vacuous: a scan that missed a matching regex would fail it."""
    module = harness()
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
