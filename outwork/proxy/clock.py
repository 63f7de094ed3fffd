"""A coarse clock, ticked by the gateway's timer: reading the time on every request costs more
than the precision is worth (timeouts are checked four times a second anyway)."""

from __future__ import annotations

import asyncio
import time


class Clock:
    __slots__ = ("_loop", "now", "wall")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = loop.time()  # the loop's monotonic time, for deadlines
        self.wall = time.time()  # seconds since the epoch, for the TLS engine

    def tick(self) -> None:
        self.now = self._loop.time()
        self.wall = time.time()
