"""Replay the kept corpus of the rate-limit fuzz harness (fuzz/fuzz_rate_limit.py): rates,
keys and arrival gaps; only the parsers' own errors may come out, and GCRA never admits more
than burst + span / interval. No atheris needed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_replay import Corpus

CORPUS = Corpus("rate_limit", "fuzz_rate_limit", max_bytes=1024 * 1024, seeds=False)
test_corpus_input_replays = CORPUS.replay_test()
test_corpus_is_kept_and_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


@given(st.binary(max_size=200))
def test_any_input_is_handled(data: bytes) -> None:
    CORPUS.harness().TestOneInput(data)


def test_the_harness_checks_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not vacuous: a GCRA that admits one too many is caught."""
    module = CORPUS.harness()
    real = module.decide

    def lenient(tat: int, now: int, interval: int, burst: int) -> object:
        return real(tat, now, interval, burst + 1)

    monkeypatch.setattr(module, "decide", lenient)
    with pytest.raises(AssertionError):
        module.TestOneInput(b"1/h\nclient_address\n\x00\x00\x00\x00\x00")
