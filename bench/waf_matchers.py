"""Micro-benchmark of the WAF's matchers: each transformation CRS uses and the @rx scan
(`PatternSet.candidates` over CRS v4.28's 295 regexes) on a 1 KiB and a 64 KiB value.

    .venv/bin/python bench/waf_matchers.py [--rounds N]

Values: benign text (words, JSON, form fields, with some '%', '&', '\\' so the decoders have
work), the same for both sizes. Prints microseconds per call (best of `--rounds` timeit runs).
"""

from __future__ import annotations

import argparse
import json
import random
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

from outwork.waf.operators import Pm
from outwork.waf.patterns import PatternSet
from outwork.waf.transforms import TRANSFORMS, pipeline

ROOT = Path(__file__).resolve().parent.parent
CRS_OPERATORS = ROOT / "tests" / "data" / "waf" / "crs-operators.json"
WORDS = [
    b"hello", b"world", b'{"name": "a", "id": 12}', b"user=joe&page=2", b"caf%C3%A9",
    b"a\\nb", b"&amp;", b"path/to/file.txt", b"Lorem", b"ipsum", b"/* c */", b"0x41",
]  # fmt: skip
CRS_PIPELINE = ["utf8toUnicode", "urlDecodeUni", "htmlEntityDecode", "jsDecode", "cssDecode"]


def value_of(size: int) -> bytes:
    chooser = random.Random(size)
    out = bytearray()
    while len(out) < size:
        out += chooser.choice(WORDS) + b" "
    return bytes(out[:size])


def best_us(function: Callable[[], object], rounds: int) -> float:
    number = 1
    while timeit.timeit(function, number=number) < 0.05:
        number *= 2
    return min(timeit.repeat(function, number=number, repeat=rounds)) / number * 1e6


def match_pm(phrases: Pm, value: bytes) -> object:
    return phrases.match(value, lambda text: b"")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    entries = json.loads(CRS_OPERATORS.read_text())
    patterns = sorted({entry["argument"] for entry in entries if entry["operator"] == "rx"})
    scan = PatternSet(patterns)
    phrases = Pm(
        phrase.encode()
        for entry in entries
        if entry["operator"] == "pm"
        for phrase in entry["argument"].split()
    )
    values = [value_of(1024), value_of(64 * 1024)]

    def measure(function: Callable[[bytes], object]) -> list[float]:
        return [best_us(partial(function, value), rounds) for value in values]

    rows: list[tuple[str, list[float]]] = [
        (f"t:{name}", measure(TRANSFORMS[name])) for name in sorted(TRANSFORMS)
    ]
    rows.append(("t:" + ",t:".join(CRS_PIPELINE), measure(pipeline(CRS_PIPELINE))))
    rows.append((f"PatternSet.candidates ({len(patterns)} CRS regexes)", measure(scan.candidates)))
    rows.append((f"@pm ({len(phrases.phrases)} CRS phrases)", measure(partial(match_pm, phrases))))
    width = max(len(label) for label, _ in rows)
    print(f"{'µs per call':<{width}}  {'1 KiB':>10}  {'64 KiB':>10}")
    for label, figures in rows:
        print(f"{label:<{width}}  {figures[0]:>10.1f}  {figures[1]:>10.1f}")


if __name__ == "__main__":
    main()
