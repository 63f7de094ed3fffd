"""The replay of a kept atheris corpus in the test suite, one for every harness under fuzz/.

    JSON = Corpus("json_limits", "fuzz_json_limits", max_files=100, max_bytes=512 * 1024)
    test_corpus_input_replays = JSON.replay_test()
    test_corpus_is_kept_and_small = JSON.size_test()
    test_harness_imports_without_atheris = JSON.import_test()

Every file in `fuzz/corpus/<folder>/` goes through `TestOneInput` of `fuzz/<module>.py`, which
lets through only what the fuzzer counts as a crash; the harnesses import atheris only when run
as scripts, so none is needed here. A corpus folder that is missing or empty fails the replay
(an empty parameter list would only skip it, and a corpus lost in a move would go unnoticed).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
CORPUS_DIR = FUZZ_DIR / "corpus"


def harness(module: str) -> ModuleType:
    """`fuzz/<module>.py`, imported as the fuzzer runs it (its siblings, engine_fixtures, on
    the path)."""
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module(module)


def crash(*args: Any, **kwargs: Any) -> NoReturn:
    """Stands in for a bug in the code a harness drives: patched over one of its calls, it must
    come out of `TestOneInput` (a harness that swallowed it would make the fuzzer blind)."""
    raise IndexError("stands for a bug in the code under test")


@dataclass(frozen=True)
class Corpus:
    folder: str  # under fuzz/corpus/
    module: str  # the harness, fuzz/<module>.py
    # Small enough to replay in every `make test` and to review in a diff.
    max_files: int = 300
    max_bytes: int = 2 * 1024 * 1024
    seeds: bool = True  # holds `seed-*` files (made by a fuzz/make_*_corpus.py or by hand)
    root: Path = CORPUS_DIR

    @property
    def path(self) -> Path:
        return self.root / self.folder

    def files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.is_file())

    def harness(self) -> ModuleType:
        return harness(self.module)

    def run(self, name: str) -> None:
        """Replay the kept input `name` (a seed a test names)."""
        self.harness().TestOneInput((self.path / name).read_bytes())

    def replay_test(self) -> Callable[[Path | None], None]:
        files = self.files()
        # One failing case in place of none: a missing corpus must not pass as "0 replayed".
        params = [pytest.param(p, id=p.name[:24]) for p in files] or [
            pytest.param(None, id="no-corpus")
        ]

        @pytest.mark.parametrize("path", params)
        def test(path: Path | None) -> None:
            assert path is not None, f"no kept corpus in {self.path}"
            self.harness().TestOneInput(path.read_bytes())

        return test

    def size_test(self) -> Callable[[], None]:
        def test() -> None:
            files = self.files()
            assert files, f"no kept corpus in {self.path}"
            assert len(files) <= self.max_files, f"{len(files)} files: merge with -merge=1"
            assert sum(p.stat().st_size for p in files) <= self.max_bytes
            if self.seeds:
                assert any(p.name.startswith("seed-") for p in files), f"no seeds in {self.path}"

        return test

    def import_test(self) -> Callable[[], None]:
        def test() -> None:
            loaded = self.harness()
            assert callable(loaded.TestOneInput)
            assert not hasattr(loaded, "atheris"), "atheris must be imported only under __main__"

        return test
