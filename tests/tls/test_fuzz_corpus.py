"""Replay the kept fuzz corpus through the same targets the atheris harnesses fuzz.

Every file in `fuzz/corpus/<target>/` goes through that harness's `TestOneInput`, which lets
only the engine's own errors through silently; any other exception is a crash, here as in
the fuzzer. The harnesses import atheris only when run as scripts, so this needs no atheris.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from outwork.tls import events as ev
from outwork.tls.connection import ServerConnection

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS_DIR = FUZZ_DIR / "corpus"

# corpus directory -> harness module (fuzz/<module>.py)
TARGETS = {"client_hello": "fuzz_client_hello", "records": "fuzz_records"}

# Keep the corpus small enough to replay in every `make test` and to review in a diff.
MAX_FILES = 300
MAX_TOTAL_BYTES = 2 * 1024 * 1024


def harness(module: str) -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))  # the harnesses import engine_fixtures as a sibling
    return importlib.import_module(module)


def corpus_files(root: Path = CORPUS_DIR) -> list[tuple[str, Path]]:
    return [
        (target, path)
        for target in sorted(TARGETS)
        if (root / target).is_dir()
        for path in sorted((root / target).iterdir())
        if path.is_file()
    ]


@pytest.mark.parametrize(
    ("target", "path"),
    corpus_files(),
    ids=[f"{target}/{path.name}" for target, path in corpus_files()],
)
def test_corpus_file_replays_without_a_crash(target: str, path: Path) -> None:
    harness(TARGETS[target]).TestOneInput(path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_has_seeds(target: str) -> None:
    names = [p.name for p in (CORPUS_DIR / target).iterdir()]
    assert any(name.startswith("seed-") for name in names), f"no seed files for {target}"


def test_corpus_stays_small() -> None:
    files = [path for _, path in corpus_files()]
    assert len(files) < MAX_FILES
    assert sum(path.stat().st_size for path in files) < MAX_TOTAL_BYTES


@pytest.mark.parametrize("module", sorted(TARGETS.values()))
def test_harness_imports_without_atheris(module: str) -> None:
    loaded = harness(module)
    assert callable(loaded.TestOneInput)
    assert not hasattr(loaded, "atheris"), "atheris must be imported only under __main__"


@pytest.mark.parametrize("module", sorted(TARGETS.values()))
def test_harness_lets_unexpected_exceptions_through(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target that swallowed everything would make the replay (and the fuzzer) useless."""

    def broken(self: ServerConnection, data: bytes, now: float = 0.0) -> list[ev.Event]:
        raise IndexError("stands for an engine bug")

    monkeypatch.setattr(ServerConnection, "receive_data", broken)
    with pytest.raises(IndexError):
        harness(module).TestOneInput(b"\x00" + bytes(64))
