"""GCRA (the generic cell rate algorithm): a rate limit kept as one timestamp per key.

A limit of N per period with a burst B admits B requests at once, then one every
`interval = period / N`. Its state is the theoretical arrival time (TAT): when the key's
bucket would be full again. A request at `now` is admitted when `max(TAT, now) + interval`
is at most `now + B * interval` away, and then moves the TAT on by one interval. Whatever the
timing, a key is admitted at most `B + t / interval` times in any span of t.

Times are integer microseconds: exact in the 64-bit slots of the shared table and in Redis,
so no rounding lets one more request through. The interval is rounded up for the same reason.
The Redis store runs the same arithmetic in Lua (`redis_store.GCRA_SCRIPT`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MICROS: Final = 1_000_000
PERIODS: Final = {"s": MICROS, "m": 60 * MICROS, "h": 3600 * MICROS, "d": 86400 * MICROS}
# Above a million per second the interval would be under a microsecond.
MAX_PER_SECOND: Final = MICROS
MAX_BURST: Final = 1_000_000_000
_RATE: Final = re.compile(r"^([1-9][0-9]{0,9})/([smhd])$")


@dataclass(frozen=True, slots=True)
class Rate:
    count: int  # N
    period: str  # "s", "m", "h", "d"

    @property
    def interval(self) -> int:
        """Microseconds between two admitted requests at the sustained rate (rounded up)."""
        return -(-PERIODS[self.period] // self.count)

    def __str__(self) -> str:
        return f"{self.count}/{self.period}"


def parse_rate(text: str) -> Rate:
    """`10/s`, `1000/m`, `5/h`, `100/d`; raises ValueError with a message for the user."""
    match = _RATE.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"invalid rate {text!r} (expected N/s, N/m, N/h or N/d, e.g. 10/s)")
    rate = Rate(int(match.group(1)), match.group(2))
    if rate.count * MICROS > PERIODS[rate.period] * MAX_PER_SECOND:
        raise ValueError(f"rate {text!r} is above the maximum of {MAX_PER_SECOND}/s")
    return rate


class Decision:
    """One request's outcome. Made on every request, so a plain class: compiled, it is built
    in C, where a NamedTuple's __new__ and a frozen dataclass's __init__ are Python functions
    (a frame per request)."""

    __slots__ = ("admitted", "tat", "retry_after", "remaining", "reset")

    def __init__(
        self, admitted: bool, tat: int, retry_after: int, remaining: int, reset: int
    ) -> None:
        self.admitted = admitted
        self.tat = tat  # the key's TAT after this request (unchanged when refused)
        self.retry_after = retry_after  # microseconds until one would be admitted (0: admitted)
        self.remaining = remaining  # requests that would still be admitted now, after this one
        self.reset = reset  # microseconds until the burst is whole again


def decide(tat: int, now: int, interval: int, burst: int) -> Decision:
    """One request at `now` (microseconds) against a key whose TAT is `tat` (0: never seen)."""
    tolerance = burst * interval
    base = tat if tat > now else now
    new_tat = base + interval
    allow_at = new_tat - tolerance
    if allow_at > now:
        return Decision(False, tat, allow_at - now, 0, base - now)
    return Decision(True, new_tat, 0, (now - allow_at) // interval, new_tat - now)
