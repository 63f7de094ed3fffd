"""Replay the kept corpus of fuzz/fuzz_scan_wire.py (the scanner's readers) in every run."""

from __future__ import annotations

from pathlib import Path

import pytest

from outwork.scan import wire
from tests.tls.test_fuzz_corpus import harness

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus" / "scan_wire"
FILES = sorted(CORPUS.iterdir())
MAX_FILES = 200
MAX_TOTAL_BYTES = 512 * 1024


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file_replays_without_a_crash(path: Path) -> None:
    harness("fuzz_scan_wire").TestOneInput(path.read_bytes())


def test_corpus_has_seeds_and_stays_small() -> None:
    assert any(p.name.startswith("seed-") for p in FILES)
    assert len(FILES) < MAX_FILES
    assert sum(p.stat().st_size for p in FILES) < MAX_TOTAL_BYTES


def test_harness_imports_without_atheris() -> None:
    loaded = harness("fuzz_scan_wire")
    assert not hasattr(loaded, "atheris")


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: wire.RecordReader, data: bytes) -> list[wire.Record]:
        raise IndexError("stands for a reader bug")

    monkeypatch.setattr(wire.RecordReader, "feed", broken)
    with pytest.raises(IndexError):
        harness("fuzz_scan_wire").TestOneInput(b"\x00\x00" + bytes(16))
