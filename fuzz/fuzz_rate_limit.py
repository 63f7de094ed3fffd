"""Fuzz target: a rate limit's config text and a peer's arrival times.

    .venv/bin/python fuzz/fuzz_rate_limit.py /tmp/fuzz-rl fuzz/corpus/rate_limit

The input is `rate\\nkey\\n` then arrival gaps: the first two lines (UTF-8, errors replaced)
go to `parse_rate` and to the `rate_limit` step's schema as `rate` and `key`; only ValueError
(msgspec.ValidationError for the spec) may come out. For a valid rate, each following byte is
a gap in milliseconds (times 37, so hours pass too) between requests against GCRA with burst
3: a crash is any window of admitted requests larger than burst + span / interval. The same
bytes, as a peer string, must give `peer_host` an answer without raising, and as a client
address `address_key` a key (for an IPv6 address, a network whose own key it is).

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

import msgspec

from outwork.filters.ban import peer_host
from outwork.filters.client_key import address_key
from outwork.filters.gcra import decide, parse_rate
from outwork.filters.rate_limit import LimitSpec

BURST = 3


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    rate_text, _, rest = data.partition(b"\n")
    key_text, _, gaps = rest.partition(b"\n")
    rate_str = rate_text.decode("utf-8", "replace")
    text = data.decode("utf-8", "replace")
    peer_host(text)
    prefix = 48 + (data[0] % 81 if data else 16)
    key = address_key(text, prefix)
    if key != text:  # an IPv6 address was read: its network's own key is that network
        assert address_key(key.partition("/")[0], prefix) == key, (text, key)
    try:
        msgspec.convert({"key": key_text.decode("utf-8", "replace"), "rate": rate_str}, LimitSpec)
    except msgspec.ValidationError:
        pass
    try:
        rate = parse_rate(rate_str)
    except ValueError:
        return
    interval = rate.interval
    now, tat, admitted = 1_700_000_000_000_000, 0, []
    for gap in gaps:
        now += gap * 37_000
        decision = decide(tat, now, interval, BURST)
        if decision.admitted:
            tat = decision.tat
            admitted.append(now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= BURST + (admitted[j] - start) / interval, (rate, admitted)


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
