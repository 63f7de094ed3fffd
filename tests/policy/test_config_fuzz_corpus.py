"""Replay the kept corpus of the config fuzz harness (fuzz/fuzz_config.py): the YAML reader and
the structural check of a whole config, the value parsers, the reload summary. No atheris
needed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ_DIR / "corpus" / "config"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file()) if CORPUS.is_dir() else []


def harness() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module("fuzz_config")


def test_corpus_is_kept_and_small() -> None:
    assert 0 < len(FILES) <= 300
    assert sum(p.stat().st_size for p in FILES) <= 2 * 1024 * 1024


@pytest.mark.parametrize("path", FILES, ids=[p.name[:12] for p in FILES])
def test_corpus_input_replays(path: Path) -> None:
    harness().TestOneInput(path.read_bytes())


def test_harness_sees_every_problem() -> None:
    """The harness is not vacuous: a config with three mistakes gives three problems."""
    problems = harness().structure(
        "listeners: [{name: a, bind: x, heartbeet: 1}]\n"
        "routes: [{upstream: u, match: {path: 5}}]\n"
        "upstreams: {u: {targets: [], retires: 2}}\n"
    )
    assert [(p.line, p.path) for p in problems] == [
        (1, "listeners[0].heartbeet"),
        (2, "routes[0].match.path"),
        (3, "upstreams.u.retires"),
        (3, "upstreams.u.targets"),
    ]
