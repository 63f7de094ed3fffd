"""The JSON check of `threat_protection`, timed in process (not a pass/fail test):

    .venv/bin/python bench/threat_json.py

For a 1 KiB and a 1 MiB document of typical API objects (an array of records with nested
tags and an address): MB/s through `JsonChecker` fed whole and in 64 KiB chunks, the same
against `json.loads` (C, and it builds the document: what the check avoids), and the CPU of
the filter's two hooks for one 1 KiB request (head and body). Each figure is the best of 5.
"""

from __future__ import annotations

import json
import random
import timeit
from typing import Any

from outwork.filters.json_limits import JsonChecker, JsonLimits
from outwork.filters.threat import ThreatSpec, build

CHUNK = 64 * 1024


def record(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"user {i}",
        "email": f"u{i}@example.com",
        "active": i % 2 == 0,
        "score": round(rng.random() * 100, 3),
        "tags": ["a", "b", "c"],
        "address": {"city": "Paris, France", "zip": "75001", "note": "line\nbreak \u00e9"},
    }


def document(size: int) -> bytes:
    rng = random.Random(1)
    records: list[dict[str, Any]] = []
    while len(json.dumps(records)) < size:
        records.append(record(len(records), rng))
    return json.dumps(records[:-1] or records).encode()


def best(call: Any, size: int) -> float:
    """Seconds per call, best of 5 (about 2 MB checked per repeat)."""
    number = max(1, 2_000_000 // size)
    return min(timeit.repeat(call, number=number, repeat=5)) / number


def main() -> None:
    limits = JsonLimits()

    def whole(doc: bytes) -> None:
        checker = JsonChecker(limits)
        checker.feed(doc)
        checker.finish()

    def chunked(doc: bytes) -> None:
        checker = JsonChecker(limits)
        for start in range(0, len(doc), CHUNK):
            checker.feed(doc[start : start + CHUNK])
        checker.finish()

    for label, size in (("1 KiB", 1024), ("1 MiB", 1 << 20)):
        doc = document(size)
        t_whole = best(lambda doc=doc: whole(doc), len(doc))
        t_chunked = best(lambda doc=doc: chunked(doc), len(doc))
        t_loads = best(lambda doc=doc: json.loads(doc), len(doc))
        print(
            f"{label} ({len(doc)} B): {len(doc) / t_whole / 1e6:.0f} MB/s whole, "
            f"{len(doc) / t_chunked / 1e6:.0f} MB/s in 64 KiB chunks, {t_whole * 1e6:.1f} µs; "
            f"json.loads {len(doc) / t_loads / 1e6:.0f} MB/s "
            f"(the check takes {t_whole / t_loads:.1f}x its time)"
        )
    print_filter_cost(document(1024))


def print_filter_cost(doc: bytes) -> None:
    import msgspec

    from outwork.http.messages import Framing, RequestHead

    threat = build(msgspec.convert({"json": {}}, ThreatSpec, strict=True))
    fields = [(b"content-type", b"application/json")]
    head = RequestHead(b"POST", b"/", "1.1", fields, b"", Framing.LENGTH, len(doc), True, False)

    class Context:
        filter_state: dict[int, Any] = {}

    ctx: Any = Context()

    def request() -> None:
        threat.on_request_head(ctx, head, print)
        threat.on_request_body(ctx, doc, True, print)

    print(f"threat_protection, one 1 KiB JSON request: {best(request, len(doc)) * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
