"""A response held for the filters that inspect response bodies (the `waf` step's phase 4).

When a route has filters with `inspects_response_body` and one of them asks for this response's
body (`response_body_limit`), the upstream connection hands the response here instead of to the
client: the head waits, body chunks are kept (by reference) and pass through the filters'
`on_response_body`, up to the largest limit asked for. Then either

- a filter answers (`Reply`): the held response is dropped whole, the client gets the answer
  (the upstream connection is closed if the body was not all read, pooled otherwise);
- the body ended, or passed the limit, and the filters let it pass: the head and what was held
  go out at once, and the rest (if any) streams as any response does.

Held bytes are capped by the limit (plus one read's worth: the chunk that passes it), and all
the responses held in this process together by `MAX_HELD_BYTES`; a body the filters did not ask
for, and a response without a body (HEAD, 1xx, 204, 304, a 0 length), is never held. Every
other response takes the path it always took: `hold` says None at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outwork.filters import Continue, Reply
from outwork.filters.runner import FILTER_FAILED, ChainRun, Hooks, run
from outwork.http.messages import Framing, ResponseHead
from outwork.observe.refusals import Refusal
from outwork.proxy import pipeline

if TYPE_CHECKING:
    from outwork.proxy.exchange import Exchange


# What every response held in this process may hold together. Each is capped by its filters'
# limit; this caps them all: a client need not read anything for its responses to be held, and
# one HTTP/2 connection may have a hundred streams on a large page (100 x 512 KiB). Past it a
# response is refused rather than passed on uninspected (the filters' own copies come on top).
MAX_HELD_BYTES = 64 * 1024 * 1024
OVER_BUDGET = Reply(
    502, Refusal.RESPONSE_TOO_LARGE, detail={"reason": "responses held over the gateway's budget"}
)


class Budget:
    """The bytes held now, by every response of this process (`HeldResponse.size` summed)."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0


BUDGET = Budget()


def hold(ex: Exchange, head: ResponseHead) -> HeldResponse | None:
    """After the response-head hooks let `head` pass: the held response when a filter wants to
    see its body first, else None (the response goes to the client as it comes). The route's
    chain knows its body inspectors from config load: on other routes, one attribute read."""
    hooks = ex.filters.response_body
    if not hooks.filters:
        return None
    if head.framing is Framing.NONE or head.content_length == 0 or head.status < 200:
        return None
    limit = 0
    for inspector in hooks.filters:
        limit = max(limit, inspector.response_body_limit(ex, head))
    if limit <= 0:
        return None
    return HeldResponse(ex, head, hooks, limit)


class HeldResponse:
    """One response waiting for the body filters (see the module's docstring)."""

    __slots__ = ("ex", "head", "hooks", "limit", "chunks", "size", "counted")

    def __init__(self, ex: Exchange, head: ResponseHead, hooks: Hooks, limit: int) -> None:
        self.ex = ex
        self.head = head
        self.hooks = hooks  # the chain's response-body hooks
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.counted = 0  # of `size`, what BUDGET counts (0 once released or dropped)

    def feed(self, data: bytes) -> Reply | bool:
        """A body chunk from the upstream. True: still held; False: released (the head and
        what was held went to the client, the rest streams); a `Reply`: the client gets that
        instead (the caller drops the upstream response, and then this one: `drop`)."""
        if BUDGET.used + len(data) > MAX_HELD_BYTES:
            return OVER_BUDGET
        self.chunks.append(data)
        self.size += len(data)
        self.counted += len(data)
        BUDGET.used += len(data)
        verdict = self._run(data, False)
        if isinstance(verdict, Reply):
            return verdict
        if self.size <= self.limit:
            return True
        self._release()
        return False

    def drop(self) -> None:
        """The upstream connection let the response go (ended, failed, refused, or its client
        left): its bytes leave the budget (what `end` still sends goes out at once)."""
        BUDGET.used -= self.counted
        self.counted = 0

    def end(self) -> None:
        """The response ended while held (the upstream connection has let the exchange go):
        the filters' last word, then the whole response or their answer."""
        self.drop()
        ex = self.ex
        if ex.cancelled or ex.response_done:
            return
        verdict = self._run(b"", True)
        if isinstance(verdict, Reply):
            pipeline.refuse(ex, verdict)
            return
        self._release()
        ex.client.response_end(ex)

    def _run(self, chunk: bytes, end: bool) -> Continue | Reply:
        outcome = run(self.hooks, self.ex, chunk, end)
        if isinstance(outcome, ChainRun):
            outcome.parked = -1  # no waiting here: a later resume is refused
            return FILTER_FAILED
        return outcome

    def _release(self) -> None:
        ex = self.ex
        client = ex.client
        client.response_head(ex, self.head)
        for chunk in self.chunks:
            client.response_body(ex, chunk)
        self.chunks = []
        self.drop()
