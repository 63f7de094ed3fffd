"""Fuzz target: the JSON checks of `threat_protection`: the incremental checker
(filters/json_limits.py) and the whole-body one (filters/json_whole.py).

    .venv/bin/python fuzz/fuzz_json_limits.py /tmp/fuzz-json fuzz/corpus/json_limits

Byte 0 picks the limits (bits 0-1: the defaults, tiny ones that every document soon passes,
or ones no input here reaches) and where to cut the rest in two (bits 2-7, times the length
/ 64); the rest is a request body. It is checked whole, in the two pieces, and byte by byte
(up to 4 KiB): all three must agree on whether it passes, only `JsonViolation` may come out,
and with the unreachable limits it must pass exactly when a strict parser (Python's json on
strictly decoded UTF-8, without NaN or Infinity) accepts it. The whole-body check must give
the incremental checker's verdict on the body fed whole: the same refusal and message.
`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

import json

from outwork.filters.json_limits import JsonChecker, JsonLimits, JsonViolation
from outwork.filters.json_whole import check_whole

PROFILES = (
    JsonLimits(),
    JsonLimits(max_depth=3, max_keys=3, max_string=8, max_array=4, max_number=6, max_size=512),
    JsonLimits(
        max_depth=10_000, max_keys=10**6, max_string=10**6, max_array=10**6, max_number=4000
    ),
    JsonLimits(max_depth=1, max_keys=1, max_string=1, max_array=1, max_number=1),
)
BYTE_BY_BYTE = 4096


LIMIT_NAMES = (
    "syntax",
    "max_depth",
    "max_keys",
    "max_string",
    "max_array",
    "max_number",
    "max_size",
)


def verdict(limits: JsonLimits, pieces: list[bytes]) -> str:
    checker = JsonChecker(limits)
    try:
        for piece in pieces:
            checker.feed(piece)
        checker.finish()
    except JsonViolation as exc:
        assert exc.limit in LIMIT_NAMES, exc.limit
        return f"{exc.limit}: {exc.message}"
    return "ok"


def whole_verdict(limits: JsonLimits, doc: bytes) -> str:
    try:
        check_whole(limits, doc)
    except JsonViolation as exc:
        return f"{exc.limit}: {exc.message}"
    return "ok"


def strictly_valid(doc: bytes) -> bool:
    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(doc.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return True


def TestOneInput(data: bytes) -> None:  # noqa: N802 (the name atheris and libFuzzer use)
    if not data:
        return
    mode, doc = data[0], data[1:]
    limits = PROFILES[mode & 3]
    whole = verdict(limits, [doc])
    assert whole_verdict(limits, doc) == whole, (whole, doc)
    cut = (mode >> 2) * len(doc) // 64
    assert (verdict(limits, [doc[:cut], doc[cut:]]) == "ok") == (whole == "ok")
    if len(doc) <= BYTE_BY_BYTE:
        assert (verdict(limits, [doc[i : i + 1] for i in range(len(doc))]) == "ok") == (
            whole == "ok"
        )
    if mode & 3 == 2:
        assert (whole == "ok") == strictly_valid(doc), (whole, doc)


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
