"""Replay the kept corpus of fuzz/fuzz_credentials.py (without atheris)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from outwork.filters import credentials

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "credentials"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file())


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_credentials")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_file_replays_without_a_crash(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


def test_the_valid_seed_token_is_accepted() -> None:
    h = harness()
    seed = (CORPUS / "seed-filter-bearer-valid").read_bytes()
    ctx = h._Context()
    head = h.RequestHead(
        b"GET", b"/", "1.1", [(b"Authorization", b"Bearer " + seed[1:])], b"",
        h.Framing.NONE, -1, True, False,
    )  # fmt: skip
    assert h.FILTER.on_request_head(ctx, head, lambda v: None) is h.CONTINUE
    assert ctx.identity.subject == "alice"


def test_corpus_has_seeds_and_stays_small() -> None:
    assert any(p.name.startswith("seed-") for p in FILES)
    assert len(FILES) < 100 and sum(p.stat().st_size for p in FILES) < 512 * 1024


def test_harness_imports_without_atheris() -> None:
    assert not hasattr(harness(), "atheris")


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: bytes) -> None:
        raise IndexError("stands for a parser bug")

    monkeypatch.setattr(credentials, "parse_basic", broken)
    monkeypatch.setattr(harness(), "parse_basic", broken)
    with pytest.raises(IndexError):
        harness().TestOneInput((CORPUS / "seed-basic").read_bytes())
