"""Replay the kept corpus of the config fuzz harness (fuzz/fuzz_config.py): the YAML reader and
the structural check of a whole config, the value parsers, the reload summary. No atheris
needed."""

from __future__ import annotations

from tests.fuzz_replay import Corpus

CORPUS = Corpus("config", "fuzz_config", seeds=False)
test_corpus_input_replays = CORPUS.replay_test()
test_corpus_is_kept_and_small = CORPUS.size_test()
test_harness_imports_without_atheris = CORPUS.import_test()


def test_harness_sees_every_problem() -> None:
    """The harness is not vacuous: a config with three mistakes gives three problems."""
    problems = CORPUS.harness().structure(
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
