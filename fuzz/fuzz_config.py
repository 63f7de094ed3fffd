"""Fuzz target: config text into the config's parsers.

    .venv/bin/python fuzz/fuzz_config.py /tmp/fuzz-config fuzz/corpus/config

Byte 0 picks the parser, the rest is its input (UTF-8, undecodable bytes replaced):
- 0: YAML (`load_yaml`) and the structural check of the whole config (`Converter` over
  `ConfigSpec`, every problem reported): only ConfigError may come out of the YAML reader;
  the converter must agree with msgspec (a value, or at least one problem, each naming a line
  when the value had one) and never raise;
- 1: `parse_rate`, 2: `parse_cidr`, 3: `parse_duration`, 4: `parse_size`: a value or
  ValueError, and what they accept is in range;
- 5: the reload summary of the YAML (`summarize`, `changes`) against an empty config.
No file is read: the semantic checks (certificates, keys) are not fuzzed here.

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

import math

import msgspec

from outwork.config.changes import ConfigSummary, changes, summarize
from outwork.config.convert import FAILED, Converter
from outwork.config.schema import ConfigSpec
from outwork.config.source import ConfigError, Problem, load_yaml
from outwork.config.values import (
    MAX_BODY_SIZE,
    MAX_RATE_COUNT,
    dec_hook,
    parse_cidr,
    parse_duration,
    parse_rate,
    parse_size,
)

HOOK = dec_hook(None)


def structure(text: str) -> list[Problem]:
    try:
        source = load_yaml(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems
        return exc.problems
    problems: list[Problem] = []
    value = Converter(source, problems, HOOK).convert(source.data, ConfigSpec, ())
    try:
        msgspec.convert(source.data, ConfigSpec, strict=True, dec_hook=HOOK)
        valid = True
    except msgspec.ValidationError:
        valid = False
    assert (value is not FAILED) == valid and (valid or problems), (value, problems)
    for problem in problems:
        assert problem.line is not None and problem.line >= 1, problem
    return problems


def values(kind: int, text: str) -> None:
    try:
        if kind == 1:
            rate = parse_rate(text)
            assert 1 <= rate.count <= MAX_RATE_COUNT and rate.period > 0
            assert math.isfinite(rate.per_second)
        elif kind == 2:
            parse_cidr(text)
        elif kind == 3:
            seconds = parse_duration(text)
            assert seconds > 0 and math.isfinite(seconds)
        else:
            assert 0 <= parse_size(text) <= MAX_BODY_SIZE
    except ValueError:
        pass


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    if not data:
        return
    kind = data[0] % 6
    text = data[1:].decode("utf-8", "replace")
    if kind == 0:
        structure(text)
    elif kind == 5:
        try:
            parsed = load_yaml(text, "fuzz.yaml").data
        except ConfigError:
            return
        summary = summarize("sha256:x", parsed)
        found = changes(ConfigSummary("sha256:y", parsed=True), summary)
        assert found is not None and found["keys"]["removed"] == []
    else:
        values(kind, text)


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
