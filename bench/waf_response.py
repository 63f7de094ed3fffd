"""CPU per response of the WAF engine's response phases with CRS v4.28 (phases 3 and 4, in
process: what the `waf` step adds to a response once the request phases ran), on benign
responses: one whose body is not inspected (phase 4 at the head, no RESPONSE_BODY), and HTML
and JSON bodies of 1 KiB to the 512 KiB default `response_body_limit`; and the share of the
response rules that run fully.

    .venv/bin/python bench/waf_response.py [--rounds N] [--level L]

Prints milliseconds of process CPU per response (best of 3 runs of `--rounds` responses).
"""

from __future__ import annotations

import argparse
import json
import time

from outwork.waf.engine import Setup, Stats, Waf
from outwork.waf.request import WafRequest
from outwork.waf.response import WafResponse

PARAGRAPH = b"<p>Your order 42 ships tomorrow; thank you for shopping with us.</p>\n"


def html(size: int) -> bytes:
    head = b"<html><head><title>Orders</title></head><body>\n"
    return head + PARAGRAPH * max(1, (size - len(head)) // len(PARAGRAPH)) + b"</body></html>\n"


def json_page(size: int) -> bytes:
    items: list[dict[str, object]] = []
    body = b"{}"
    while len(body) < size:
        items.append({"id": len(items), "status": "shipped", "note": "front desk"})
        body = json.dumps({"orders": items}).encode()
    return body


CASES: dict[str, tuple[bytes, bytes | None]] = {
    "not inspected": (b"application/octet-stream", None),
    "HTML 1 KiB": (b"text/html", html(1024)),
    "JSON 8 KiB": (b"application/json", json_page(8 * 1024)),
    "HTML 64 KiB": (b"text/html", html(64 * 1024)),
    "HTML 512 KiB": (b"text/html", html(512 * 1024)),
}


def measure(waf: Waf, content_type: bytes, body: bytes | None, rounds: int) -> tuple[float, Stats]:
    best = float("inf")
    stats = Stats()
    for _ in range(3):
        spent = 0.0
        for _ in range(rounds):
            request = WafRequest(
                b"GET", b"/orders?page=2", b"HTTP/1.1", [(b"Host", b"shop.example")], "192.0.2.7"
            )
            transaction = waf.transaction(request)
            transaction.run_phase(1)
            transaction.run_phase(2)
            before = Stats(**{k: getattr(transaction.stats, k) for k in Stats.__dataclass_fields__})
            headers = [(b"Content-Type", content_type)]
            length = len(body) if body is not None else 1000
            started = time.process_time()
            response = WafResponse(200, b"HTTP/1.1", headers, length)
            transaction.respond(response)
            transaction.run_phase(3)
            response.body = body
            transaction.run_phase(4)
            spent += time.process_time() - started
            assert transaction.would_interrupt is None, [m.id for m in transaction.matches]
            after = transaction.stats
            stats = Stats(
                after.rules_reached - before.rules_reached,
                after.rules_full - before.rules_full,
                after.rx_reached - before.rx_reached,
                after.rx_full - before.rx_full,
            )
        best = min(best, spent / rounds)
    return best, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--level", type=int, default=1)
    args = parser.parse_args()
    waf = Waf.load(setup=Setup(paranoia_level=args.level))
    response_rules = sum(1 for r in waf.rules if r.phase in (3, 4))
    print(f"CRS v4.28, PL{args.level}: {response_rules} response rules")
    for name, (content_type, body) in CASES.items():
        rounds = args.rounds if body is None or len(body) < 100_000 else max(1, args.rounds // 10)
        seconds, stats = measure(waf, content_type, body, rounds)
        print(
            f"{name:>14}: {seconds * 1000:6.2f} ms CPU; rules reached {stats.rules_reached},"
            f" fully run {stats.rules_full} ({stats.share_full:.0%}); @rx rules reached"
            f" {stats.rx_reached}, regex run {stats.rx_full}"
        )


if __name__ == "__main__":
    main()
