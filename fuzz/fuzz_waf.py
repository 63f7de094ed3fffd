"""Fuzz target: the WAF's parsers of peer bytes and of rule text.

    .venv/bin/python fuzz/fuzz_waf.py /tmp/fuzz-waf fuzz/corpus/waf

Byte 0 picks the target, the rest is its input:
- 0-3: a value through a transformation list (byte 1 picks up to three of them): every
  transformation takes any bytes, and the decoders never make a value longer;
- 4-5: a regex (the rest, as Latin-1 text, cut at the first NUL; what follows is a value):
  compiling either works or raises ValueError, and a compiled one never misses in the scan
  (both of `PatternSet`'s scans hold it whenever it matches the value);
- 6-7: an operator argument (@validateByteRange, @ipMatch, @pm): ValueError or an operator
  that takes any value (@pm's answer is always a phrase the value holds);
- 0xf0-0xff (before the others): a request body through a body processor (byte 1 picks
  URLENCODED, JSON, MULTIPART or XML): it never raises, and gives at most MAX_BODY_ARGS
  arguments, names and values as bytes.

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from pathlib import Path

from outwork.waf.operators import build_operator
from outwork.waf.patterns import PatternSet, compile_regex
from outwork.waf.request import MAX_BODY_ARGS, parse_body
from outwork.waf.transforms import TRANSFORMS, pipeline

NAMES = sorted(TRANSFORMS)
GROWING = {"hexencode", "urlencode", "utf8tounicode", "length", "sha1", "md5"}
OPERATORS = ("validateByteRange", "ipMatch", "pm", "within")
PROCESSORS = ("URLENCODED", "JSON", "MULTIPART", "XML")


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
    if found is not None and name == "pm":
        assert found.matched.lower() in value.lower(), (argument, value, found)


def fuzz_body(selector: int, data: bytes) -> None:
    processor = PROCESSORS[selector % len(PROCESSORS)]
    body = parse_body(processor, b"multipart/form-data; boundary=x", data)
    assert len(body.args) <= MAX_BODY_ARGS
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in body.args)


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    if len(data) < 2:
        return
    if data[0] >= 0xF0:
        fuzz_body(data[1], data[2:])
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
