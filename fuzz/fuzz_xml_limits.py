"""Fuzz target: the streaming XML checker of `threat_protection` (filters/xml_limits.py).

    .venv/bin/python fuzz/fuzz_xml_limits.py /tmp/fuzz-xml fuzz/corpus/xml_limits

Byte 0 picks the limits (bit 0: the defaults, or a small depth and size) and where to cut the
rest in two (bits 1-7, times the length / 128); the rest is a request body, checked whole and
in the two pieces: both must agree on whether it passes, and only `XmlViolation` may come out.
A body that passes holds no DOCTYPE (expat saw none).
`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from outwork.filters.xml_limits import XmlChecker, XmlLimits, XmlViolation

PROFILES = (XmlLimits(), XmlLimits(max_depth=3, max_size=256))


def verdict(limits: XmlLimits, pieces: list[bytes]) -> str:
    checker = XmlChecker(limits)
    try:
        for piece in pieces:
            checker.feed(piece)
        checker.finish()
    except XmlViolation as exc:
        assert exc.limit in ("syntax", "dtd", "max_depth", "max_size"), exc.limit
        return exc.limit
    return "ok"


def TestOneInput(data: bytes) -> None:  # noqa: N802 (the name atheris and libFuzzer use)
    if not data:
        return
    mode, doc = data[0], data[1:]
    limits = PROFILES[mode & 1]
    whole = verdict(limits, [doc])
    cut = (mode >> 1) * len(doc) // 128
    assert (verdict(limits, [doc[:cut], doc[cut:]]) == "ok") == (whole == "ok")
    if whole == "ok":
        assert b"<!DOCTYPE" not in doc.upper() or b"<!--" in doc or b"<![CDATA[" in doc.upper()


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
