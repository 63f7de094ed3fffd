"""Replay the kept corpus of the rate-limit fuzz harness (fuzz/fuzz_rate_limit.py): rates,
keys and arrival gaps; only the parsers' own errors may come out, and GCRA never admits more
than burst + span / interval. No atheris needed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "rate_limit"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file()) if CORPUS.is_dir() else []


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_rate_limit")


def test_corpus_is_kept_and_small() -> None:
    assert 0 < len(FILES) <= 300
    assert sum(p.stat().st_size for p in FILES) <= 1024 * 1024


@pytest.mark.parametrize("path", FILES, ids=[p.name[:12] for p in FILES])
def test_corpus_input_replays(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


@given(st.binary(max_size=200))
def test_any_input_is_handled(data: bytes) -> None:
    harness().TestOneInput(data)


def test_the_harness_checks_the_bound() -> None:
    """Not vacuous: a GCRA that admits one too many is caught."""
    module = harness()
    real = getattr(module, "decide")  # noqa: B009

    def lenient(tat: int, now: int, interval: int, burst: int) -> object:
        return real(tat, now, interval, burst + 1)

    setattr(module, "decide", lenient)  # noqa: B010 (the harness module is untyped here)
    try:
        with pytest.raises(AssertionError):
            module.TestOneInput(b"1/h\nclient_address\n\x00\x00\x00\x00\x00")
    finally:
        setattr(module, "decide", real)  # noqa: B010
