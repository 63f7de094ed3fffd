"""Replay the kept corpus of the HTTP request fuzz harness (fuzz/fuzz_http_request.py), which
reads each input in one read and in two, routes every head and checks that only HTTPError is
raised and that both readings agree. No atheris needed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "http_request"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file()) if CORPUS.is_dir() else []


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_http_request")


def test_corpus_is_kept_and_small() -> None:
    assert 0 < len(FILES) <= 300
    assert sum(p.stat().st_size for p in FILES) <= 2 * 1024 * 1024


@pytest.mark.parametrize("path", FILES, ids=[p.name[:12] for p in FILES])
def test_corpus_input_replays(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


def test_harness_sees_the_events() -> None:
    """The harness is not vacuous: a split upgrade request and its successor both read."""
    module = harness()
    data = (
        b"GET /u HTTP/1.1\r\nHost: b.example\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        b"GET /v HTTP/1.1\r\nHost: z\r\n\r\n"
    )
    events, status = module.read(data, 20)
    assert status == 0 and [e[1] for e in events if isinstance(e, tuple)] == [b"/u", b"/v"]
