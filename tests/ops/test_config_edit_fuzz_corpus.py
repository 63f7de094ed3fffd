"""Replay the kept corpus of fuzz/fuzz_config_edit.py (without atheris)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "config_edit"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file())


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_config_edit")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file_replays_without_a_crash(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


def test_corpus_has_seeds_and_stays_small() -> None:
    assert any(p.name.startswith("seed-") for p in FILES)
    assert len(FILES) < 100 and sum(p.stat().st_size for p in FILES) < 512 * 1024


def test_harness_imports_without_atheris() -> None:
    assert not hasattr(harness(), "atheris")


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    module = harness()

    def broken(text: str, when: object) -> tuple[str, object]:
        raise IndexError("stands for an editor bug")

    monkeypatch.setattr(module, "revoke", broken)
    with pytest.raises(IndexError):
        module.TestOneInput((CORPUS / "seed-policies").read_bytes())
