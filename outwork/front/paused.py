"""Upstream connections paused for a client address: the responses they carry wait for the
client to take them (an HTTP/2 stream's window, an HTTP/1.1 socket not read), and meanwhile
each holds a slot of its upstream's `max_connections`. One count per client address (in this
worker process), over HTTP/1.1 and HTTP/2, against `limits.max_paused_upstreams_per_address`.
"""

from __future__ import annotations

# A pause over a cap is cut once it has lasted this long: a pause the client ends at once (its
# socket drained, a window opened) costs nothing.
OVER_CAP_GRACE = 1.0


class PausedByAddress:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}

    def add(self, host: bytes) -> int:
        """Count one more for `host`; the count, this one included."""
        count = self.counts[host] = self.counts.get(host, 0) + 1
        return count

    def remove(self, host: bytes) -> None:
        left = self.counts.get(host, 1) - 1
        if left > 0:
            self.counts[host] = left
        else:
            self.counts.pop(host, None)


paused_by_address = PausedByAddress()
