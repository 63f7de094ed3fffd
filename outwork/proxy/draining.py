"""The client connection every listener serves: HTTP/1.1 (and h2 through ALPN) that a reload or
a graceful stop can drain. Its own module, compiled with front/h1.py (scripts/build-native): a
class the interpreter runs cannot inherit from a compiled one."""

from __future__ import annotations

from typing import Final

from outwork.front.h1 import ClientProtocol
from outwork.http.messages import RequestHead

# A draining connection that is idle is closed after this many seconds (a request already on its
# way is answered instead of being cut).
DRAIN_IDLE_GRACE: Final = 1.0


class DrainingClientProtocol(ClientProtocol):
    """A client connection that can be drained (reload, graceful stop): once its gateway state
    drains, the next response says `Connection: close` and an idle connection is closed after a
    short grace (a request that arrives meanwhile is answered, with `Connection: close`)."""

    __slots__ = ()

    def on_request_head(self, head: RequestHead) -> None:
        if self.state.draining:
            head.keep_alive = False
        super().on_request_head(head)

    def drain(self) -> None:
        if self._closed:
            return  # closed already; unsent output keeps its own deadline (close_state at the end)
        if self._h2 is not None:
            self._h2.drain()  # GOAWAY; the streams in flight are answered, then it closes
            return
        if self._queue or self._reading is not None:
            # Busy: what is in flight is answered, with `Connection: close` where its response
            # has not started (else the next request gets it).
            for ex in self._queue:
                if not ex.response_started:
                    ex.keep_alive = False
            return
        deadline = self.state.clock.now + DRAIN_IDLE_GRACE
        self.deadline = min(self.deadline, deadline) if self.deadline else deadline
