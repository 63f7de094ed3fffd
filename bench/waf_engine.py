"""CPU per request of the WAF engine with CRS v4.28 at paranoia level 1 (phases 1 and 2, in
process: what the `waf` step adds to a request), on benign requests: a GET with a query, a
1 KiB JSON POST, a form POST, and JSON bodies of 10 B to 64 KiB; and the share of rules that
run fully (the @rx prefilter lets most rules stop before their regex).

Two runs of each: `repeated` sends the same request again and again (the engine keeps what
it worked out for short values, as header values, names and small values recur from request
to request in real traffic); `fresh` gives every request its own header, cookie, query and
body values (none seen before: the engine's cost with nothing to reuse).

    .venv/bin/python bench/waf_engine.py [--rounds N] [--level L]

Prints milliseconds of process CPU per request (best of 3 runs of `--rounds` requests), and
the mean of the mixed set (GET with query, 1 KiB JSON POST, form POST). The heap is settled
after the load, as the gateway's is.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable

from outwork.proxy import heap
from outwork.waf.engine import Setup, Stats, Waf
from outwork.waf.request import WafRequest

MIXED = ("GET with query", "JSON POST 1 KiB", "form POST")
REPEATED = 1000  # the number in the repeated request (fresh ones count from 1001)


def headers(n: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"Host", b"api.example.com"),
        (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0.%d" % n),
        (b"Accept", b"application/json"),
        (b"Accept-Encoding", b"gzip, deflate"),
        (b"Cookie", b"session=3f2a9c71e8%d; theme=dark" % n),
    ]


def json_body(size: int, n: int) -> bytes:
    """Items until the document is `size` bytes or more (its length counted as it grows, not
    by dumping it again for each item: that made the 64 KiB bodies take minutes)."""
    items: list[dict[str, object]] = []
    empty = len(json.dumps({"customer": "Alice Example", "items": []}))
    length = 2  # b"{}"
    while length < size:
        note = f"deliver to the front desk, order {n}-{len(items)}"
        items.append({"id": n * 1000 + len(items), "qty": 2, "note": note})
        separator = 2 if len(items) > 1 else 0  # ", " between items
        length = (empty if len(items) == 1 else length) + len(json.dumps(items[-1])) + separator
    return json.dumps({"customer": "Alice Example", "items": items}).encode()


def request(
    n: int, method: bytes, target: bytes, body: bytes = b"", content_type: bytes = b""
) -> WafRequest:
    head = headers(n)
    if body:
        head += [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())]
    return WafRequest(method, target, b"HTTP/1.1", head, "192.0.2.7", 50000, body)


def cases() -> dict[str, Callable[[int], WafRequest]]:
    """Requests by kind, each made for a number `n` (the same n: the same request)."""

    def get(n: int) -> WafRequest:
        return request(n, b"GET", b"/api/v1/orders?status=open&page=%d&sort=date" % n)

    def form(n: int) -> WafRequest:
        body = b"username=alice%d&password=correct+horse+battery&remember=1&next=%%2Fhome" % n
        return request(n, b"POST", b"/login", body, b"application/x-www-form-urlencoded")

    def posting(size: int) -> Callable[[int], WafRequest]:
        def make(n: int) -> WafRequest:
            body = b'{"a": %d}' % n if size == 10 else json_body(size, n)
            return request(n, b"POST", b"/api/v1/orders", body, b"application/json")

        return make

    found: dict[str, Callable[[int], WafRequest]] = {"GET with query": get, "form POST": form}
    for size, name in ((10, "10 B"), (1024, "1 KiB"), (8 * 1024, "8 KiB"), (64 * 1024, "64 KiB")):
        found[f"JSON POST {name}"] = posting(size)
    return found


def measure(
    waf: Waf,
    make: Callable[[int], WafRequest],
    rounds: int,
    fresh: bool,
    numbers: itertools.count[int],
) -> tuple[float, Stats]:
    stats = Stats()
    best = float("inf")
    for _ in range(3):
        requests = [make(next(numbers) if fresh else REPEATED) for _ in range(rounds)]
        started = time.process_time()
        for req in requests:
            transaction = waf.transaction(req)
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
    # As the gateway once it serves (outwork/proxy/heap.py): what loading left is frozen, so
    # the collections the requests cause do not walk the compiled rule set again.
    heap.settle()
    request_rules = sum(1 for r in waf.rules if r.phase in (1, 2))
    sets = len(waf.pattern_sets)
    print(f"CRS v4.28, PL{args.level}: {request_rules} request rules, {sets} pattern sets")
    numbers = itertools.count(REPEATED + 1)
    for fresh in (False, True):
        print("fresh values in every request" if fresh else "the same request repeated")
        mixed: list[float] = []
        for name, make in cases().items():
            seconds, stats = measure(waf, make, args.rounds, fresh, numbers)
            if name in MIXED:
                mixed.append(seconds)
            print(
                f"{name:>20}: {seconds * 1000:6.2f} ms CPU; rules reached {stats.rules_reached},"
                f" fully run {stats.rules_full} ({stats.share_full:.0%}); @rx rules reached"
                f" {stats.rx_reached}, regex run {stats.rx_full}"
            )
        print(f"{'mixed set (mean)':>20}: {sum(mixed) / len(mixed) * 1000:6.2f} ms CPU")


if __name__ == "__main__":
    main()
