"""Replay the kept corpus of fuzz/fuzz_xml_limits.py (without atheris)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from outwork.filters.xml_limits import XmlChecker

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "xml_limits"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file())


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_xml_limits")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file_replays_without_a_crash(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


def test_corpus_has_seeds_and_stays_small() -> None:
    assert any(p.name.startswith("seed-") for p in FILES)
    assert len(FILES) < 100 and sum(p.stat().st_size for p in FILES) < 512 * 1024


def test_an_encoding_nobody_knows_is_refused_not_raised() -> None:
    """Found by the fuzzer: pyexpat asks Python's codecs for an encoding it lacks, and their
    LookupError came out of the checker (a 500 in the gateway)."""
    assert (
        harness().verdict(harness().PROFILES[0], [b'<?xml version="1.0" encoding="UTF-26"?><a/>'])
        == "syntax"
    )


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: XmlChecker, data: bytes) -> None:
        raise IndexError("stands for a checker bug")

    monkeypatch.setattr(XmlChecker, "feed", broken)
    with pytest.raises(IndexError):
        harness().TestOneInput((CORPUS / "seed-ordinary-0").read_bytes())
