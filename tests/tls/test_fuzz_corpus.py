"""Replay the kept fuzz corpora of the TLS engine's harnesses (fuzz/fuzz_client_hello.py,
fuzz/fuzz_records.py): `TestOneInput` lets only the engine's own errors through silently; any
other exception is a crash, here as in the fuzzer. No atheris needed."""

from __future__ import annotations

import pytest

from outwork.tls.connection import ServerConnection
from tests.fuzz_replay import Corpus, crash

CLIENT_HELLO = Corpus("client_hello", "fuzz_client_hello")
RECORDS = Corpus("records", "fuzz_records")
test_client_hello_file_replays_without_a_crash = CLIENT_HELLO.replay_test()
test_client_hello_corpus_has_seeds_and_stays_small = CLIENT_HELLO.size_test()
test_client_hello_harness_imports_without_atheris = CLIENT_HELLO.import_test()
test_records_file_replays_without_a_crash = RECORDS.replay_test()
test_records_corpus_has_seeds_and_stays_small = RECORDS.size_test()
test_records_harness_imports_without_atheris = RECORDS.import_test()


@pytest.mark.parametrize("corpus", [CLIENT_HELLO, RECORDS], ids=lambda c: c.folder)
def test_harness_lets_unexpected_exceptions_through(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The harness's own name for the engine, rebound: a compiled ServerConnection's methods
    # cannot be patched, a subclass's can.
    class Crashing(ServerConnection):
        __slots__ = ()
        receive_data = crash

    harness = corpus.harness()
    monkeypatch.setattr(harness, "ServerConnection", Crashing)
    with pytest.raises(IndexError):
        harness.TestOneInput(b"\x00" + bytes(64))
