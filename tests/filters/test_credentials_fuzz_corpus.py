"""Replay the kept corpus of fuzz/fuzz_credentials.py (without atheris)."""

from __future__ import annotations

import pytest

from outwork.filters import credentials
from tests.fuzz_replay import Corpus, crash

CORPUS = Corpus("credentials", "fuzz_credentials", max_files=100, max_bytes=512 * 1024)
test_corpus_file_replays_without_a_crash = CORPUS.replay_test()
test_corpus_has_seeds_and_stays_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_the_valid_seed_token_is_accepted() -> None:
    h = CORPUS.harness()
    seed = (CORPUS.path / "seed-filter-bearer-valid").read_bytes()
    ctx = h._Context()
    head = h.RequestHead(
        b"GET", b"/", "1.1", [(b"Authorization", b"Bearer " + seed[1:])], b"",
        h.Framing.NONE, -1, True, False,
    )  # fmt: skip
    assert h.FILTER.on_request_head(ctx, head, lambda v: None) is h.CONTINUE
    assert ctx.identity.subject == "alice"


def test_harness_lets_unexpected_exceptions_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "parse_basic", crash)
    monkeypatch.setattr(CORPUS.harness(), "parse_basic", crash)
    with pytest.raises(IndexError):
        CORPUS.run("seed-basic")
