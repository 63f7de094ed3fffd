"""Fuzz target: the WAF's parsers of peer bytes and of rule text.

    .venv/bin/python fuzz/fuzz_waf.py /tmp/fuzz-waf fuzz/corpus/waf

Byte 0 picks the target, the rest is its input:
- 0-3: a value through a transformation list (byte 1 picks up to three of them): every
  transformation takes any bytes, and the decoders never make a value longer;
- 4-5: a regex (the rest, as Latin-1 text, cut at the first NUL; what follows is a value):
  compiling either works or raises ValueError, and a compiled one never misses in the scan
  (both of `PatternSet`'s scans hold it whenever it matches the value);
- 6-7: an operator argument (@validateByteRange, @ipMatch, @pm): ValueError or an operator
  that takes any value.

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from pathlib import Path

from outwork.waf.operators import build_operator
from outwork.waf.patterns import PatternSet, compile_regex
from outwork.waf.transforms import TRANSFORMS, pipeline

NAMES = sorted(TRANSFORMS)
GROWING = {"hexencode", "urlencode", "utf8tounicode", "length", "sha1", "md5"}
OPERATORS = ("validateByteRange", "ipMatch", "pm", "within")


def fuzz_transforms(selector: int, value: bytes) -> None:
    names = [NAMES[(selector * 7 + step * 13) % len(NAMES)] for step in range(selector % 3 + 1)]
    out = pipeline(names)(value)
    assert isinstance(out, bytes)
    if not GROWING & set(names):
        assert len(out) <= len(value), (names, value, out)


def fuzz_regex(data: bytes) -> None:
    pattern_bytes, _, value = data.partition(b"\x00")
    pattern = pattern_bytes.decode("latin-1")
    try:
        compiled = compile_regex(pattern)
    except ValueError:
        return
    if compiled.search(value) is not None:
        patterns = PatternSet([pattern])
        assert patterns.set_candidates(value) == {0}, (pattern, value)
        assert patterns.prefilter_candidates(value) == {0}, (pattern, value)


def fuzz_operator(selector: int, data: bytes) -> None:
    argument, _, value = data.partition(b"\x00")
    name = OPERATORS[selector % len(OPERATORS)]
    try:
        operator = build_operator(name, argument.decode("latin-1"), Path("."))
    except ValueError:
        return
    found = operator.match(value, lambda text: b"GET POST")
    assert found is None or isinstance(found.matched, bytes)


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    if len(data) < 2:
        return
    target = data[0] % 8
    if target < 4:
        fuzz_transforms(data[1], data[2:])
    elif target < 6:
        fuzz_regex(data[1:])
    else:
        fuzz_operator(data[1], data[2:])


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
