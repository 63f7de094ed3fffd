"""Micro-benchmark of the WAF's matchers: each transformation CRS uses and the @rx scan
(`PatternSet.mask`, what the engine calls, over CRS v4.28's 295 regexes) on a 1 KiB and a
64 KiB value.

    .venv/bin/python bench/waf_matchers.py [--rounds N]

Values: benign text (words, JSON, form fields, with some '%', '&', '\\' so the decoders have
work), the same for both sizes; then the scans on symbol-dense text (what attacks look like).
Prints microseconds per call (best of `--rounds` timeit runs).
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
from outwork.waf.patterns import CompiledRegex, PatternSet, compile_regex
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


def scan_and_match(scan: PatternSet, regexes: list[CompiledRegex], value: bytes) -> object:
    """What the engine pays for a value: the scan, then the exact match of each candidate."""
    return [regexes[index].search(value) for index in scan.prefilter_candidates(value)]


def match_pm(phrases: Pm, value: bytes) -> object:
    return phrases.match(value, lambda text: b"")


def cold_set_us(patterns: list[str], value: bytes) -> float:
    """The Set's scan of a value its DFA has not seen (what a peer's fresh values cost)."""
    fresh = PatternSet(patterns)
    start = timeit.default_timer()
    fresh.set_candidates(value)
    return (timeit.default_timer() - start) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    entries = json.loads(CRS_OPERATORS.read_text())
    patterns = sorted({entry["argument"] for entry in entries if entry["operator"] == "rx"})
    scan = PatternSet(patterns)
    regexes = [compile_regex(pattern) for pattern in patterns]
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
    rows.append((f"PatternSet.set_mask ({len(patterns)} CRS regexes)", measure(scan.set_mask)))
    rows.append((f"PatternSet.prefilter_mask ({len(patterns)})", measure(scan.prefilter_mask)))
    rows.append(
        (
            "prefilter + exact RE2 of its candidates",
            measure(partial(scan_and_match, scan, regexes)),
        )
    )
    rows.append((f"@pm ({len(phrases.phrases)} CRS phrases)", measure(partial(match_pm, phrases))))
    chooser = random.Random(7)
    dense = [
        bytes(chooser.choice(b"abcdefghij klmnop=&%/.'\"<>(){}:,") for _ in range(size))
        for size in (1024, 64 * 1024)
    ]
    rows.append(
        (
            "symbol-dense: prefilter + exact",
            [best_us(partial(scan_and_match, scan, regexes, v), rounds) for v in dense],
        )
    )
    rows.append(
        ("symbol-dense: RE2 Set (cold DFA each value)", [cold_set_us(patterns, v) for v in dense])
    )
    width = max(len(label) for label, _ in rows)
    print(f"{'µs per call':<{width}}  {'1 KiB':>10}  {'64 KiB':>10}")
    for label, figures in rows:
        print(f"{label:<{width}}  {figures[0]:>10.1f}  {figures[1]:>10.1f}")


if __name__ == "__main__":
    main()
