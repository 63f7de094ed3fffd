"""CPU per request of the WAF engine with CRS v4.28 at paranoia level 1 (phases 1 and 2, in
process: what the `waf` step adds to a request), on benign requests: a GET with a query, a
1 KiB JSON POST, a form POST, and JSON bodies of 10 B to 64 KiB; and the share of rules that
run fully (the @rx prefilter lets most rules stop before their regex).

    .venv/bin/python bench/waf_engine.py [--rounds N] [--level L]

Prints milliseconds of process CPU per request (best of 3 runs of `--rounds` requests).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial

from outwork.waf.engine import Setup, Stats, Waf
from outwork.waf.request import WafRequest

HEADERS = [
    (b"Host", b"api.example.com"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"),
    (b"Accept", b"application/json"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"Cookie", b"session=3f2a9c71e8; theme=dark"),
]


def json_body(size: int) -> bytes:
    items: list[dict[str, object]] = []
    body = b"{}"
    while len(body) < size:
        items.append({"id": len(items), "qty": 2, "note": "deliver to the front desk"})
        body = json.dumps({"customer": "Alice Example", "items": items}).encode()
    return body[:size] if size < 16 else body


def request(
    method: bytes, target: bytes, body: bytes = b"", content_type: bytes = b""
) -> WafRequest:
    headers = list(HEADERS)
    if body:
        headers += [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())]
    return WafRequest(method, target, b"HTTP/1.1", headers, "192.0.2.7", 50000, body)


def cases() -> dict[str, Callable[[], WafRequest]]:
    form = b"username=alice&password=correct+horse+battery&remember=1&next=%2Fhome"
    found: dict[str, Callable[[], WafRequest]] = {
        "GET with query": lambda: request(b"GET", b"/api/v1/orders?status=open&page=2&sort=date"),
        "form POST": lambda: request(
            b"POST", b"/login", form, b"application/x-www-form-urlencoded"
        ),
    }
    for size in (10, 1024, 8 * 1024, 64 * 1024):
        body = b'{"a": 1}' if size == 10 else json_body(size)
        found[f"JSON POST {len(body)} B"] = partial(
            request, b"POST", b"/api/v1/orders", body, b"application/json"
        )
    return found


def measure(waf: Waf, make: Callable[[], WafRequest], rounds: int) -> tuple[float, Stats]:
    stats = Stats()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(rounds):
            transaction = waf.transaction(make())
            transaction.run_phase(1)
            transaction.run_phase(2)
            assert transaction.would_interrupt is None, [m.id for m in transaction.matches]
            stats = transaction.stats
        best = min(best, (time.process_time() - started) / rounds)
    return best, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--level", type=int, default=1)
    args = parser.parse_args()
    waf = Waf.load(setup=Setup(paranoia_level=args.level))
    request_rules = sum(1 for r in waf.rules if r.phase in (1, 2))
    sets = len(waf.pattern_sets)
    print(f"CRS v4.28, PL{args.level}: {request_rules} request rules, {sets} pattern sets")
    for name, make in cases().items():
        seconds, stats = measure(waf, make, args.rounds)
        print(
            f"{name:>20}: {seconds * 1000:6.2f} ms CPU; rules reached {stats.rules_reached},"
            f" fully run {stats.rules_full} ({stats.share_full:.0%}); @rx rules reached"
            f" {stats.rx_reached}, regex run {stats.rx_full}"
        )


if __name__ == "__main__":
    main()
