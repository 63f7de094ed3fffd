"""The shared corpus replay (tests/fuzz_replay.py): a corpus lost or emptied fails the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz_replay import Corpus

pytest_plugins = ["pytester"]


def replay_module(root: Path, folder: str) -> str:
    return f"""
from pathlib import Path
from tests.fuzz_replay import Corpus
CORPUS = Corpus({folder!r}, "fuzz_json_limits", root=Path({str(root)!r}))
test_replay = CORPUS.replay_test()
test_size = CORPUS.size_test()
test_import = CORPUS.import_test()
"""


def test_a_missing_corpus_fails(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_missing=replay_module(tmp_path, "gone"))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*no kept corpus in*gone*"])


def test_an_empty_corpus_fails(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    pytester.makepyfile(test_empty=replay_module(tmp_path, "empty"))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=2)


def kept_corpus(root: Path) -> None:
    folder = root / "kept"
    folder.mkdir()
    (folder / "seed-object").write_bytes(b"\x00{}")
    (folder / "a1b2c3").write_bytes(b'\x00{"a": [1, 2]}')


def test_every_kept_input_is_a_case(pytester: pytest.Pytester, tmp_path: Path) -> None:
    kept_corpus(tmp_path)
    pytester.makepyfile(test_kept=replay_module(tmp_path, "kept"))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v", "-k", "replay")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_replay?a1b2c3?*PASSED*", "*test_replay?seed-object?*"])


def test_a_crash_in_the_code_under_test_fails_the_replay(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    kept_corpus(tmp_path)
    crashing = """
import pytest
from outwork.filters.json_limits import JsonChecker
from tests.fuzz_replay import crash

@pytest.fixture(autouse=True)
def broken_checker(monkeypatch):
    monkeypatch.setattr(JsonChecker, "feed", crash)
"""
    pytester.makepyfile(test_kept=replay_module(tmp_path, "kept") + crashing)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-k", "replay")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*IndexError: stands for a bug in the code under test*"])


def test_a_corpus_without_seeds_fails_when_it_should_have_them(tmp_path: Path) -> None:
    (tmp_path / "found").mkdir()
    (tmp_path / "found" / "a1b2c3").write_bytes(b"x")
    with pytest.raises(AssertionError, match="no seeds"):
        Corpus("found", "fuzz_json_limits", root=tmp_path).size_test()()
    Corpus("found", "fuzz_json_limits", root=tmp_path, seeds=False).size_test()()
