"""Running one hook of a chain for one exchange: filter after filter until one answers or waits.

`ChainRun` is what a `Stop` parks in: the filter that stopped is handed a `resume` callback,
and calling it with `CONTINUE` runs the rest of the chain, with a `Reply` answers. A filter
that raises is never the client's business: the run ends in a 500 counted as
`Refusal.FILTER_ERROR` (the exception goes to stderr for the operator). A run the exchange
gave up on (the client went away, or the filter took too long) is `abandon`ed: a resume after
that does nothing.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

from outwork.filters import CONTINUE, Continue, Filter, Reply, RequestContext, Resume, Stop, Verdict
from outwork.http.messages import ResponseHead
from outwork.observe.refusals import Refusal

FILTER_FAILED = Reply(500, Refusal.FILTER_ERROR)

ABANDONED = -2  # `ChainRun.parked` once the exchange stopped waiting for the filter

# One hook applied to one filter, the resume callback given: e.g.
# `lambda f, resume: f.on_request_head(head, resume)`.
Hook = Callable[[Filter, Resume], Verdict]


class ChainRun:
    __slots__ = ("filters", "hook", "done", "parked")

    def __init__(
        self, filters: Sequence[Filter], hook: Hook, done: Callable[[Continue | Reply], None]
    ) -> None:
        self.filters = filters
        self.hook = hook
        self.done = done  # called once: CONTINUE after the last filter, or the Reply
        self.parked = -1  # the index of the filter waiting, -1: none

    def start(self) -> bool:
        """Run the chain; True when it finished now, False when a filter waits (`Stop`)."""
        return self._run(0)

    def _run(self, index: int) -> bool:
        filters = self.filters
        while index < len(filters):
            verdict = self._call(index)
            if isinstance(verdict, Stop):
                self.parked = index
                return False
            if isinstance(verdict, Reply):
                self.done(verdict)
                return True
            index += 1
        self.done(CONTINUE)
        return True

    def _call(self, index: int) -> Verdict:
        try:
            verdict = self.hook(self.filters[index], lambda v: self._resume(index, v))
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return FILTER_FAILED
        if not isinstance(verdict, (Continue, Stop, Reply)):
            print(f"outwork: filter {self.filters[index]!r} returned {verdict!r}", file=sys.stderr)
            return FILTER_FAILED
        return verdict

    def abandon(self) -> None:
        """The exchange waits no more (gone, or answered): a later resume does nothing."""
        self.parked = ABANDONED

    def _resume(self, index: int, verdict: Verdict) -> None:
        if self.parked != index:
            if self.parked == ABANDONED:
                return  # too late: the exchange was answered or cancelled meanwhile
            raise RuntimeError("resume called by a filter that is not waiting")
        self.parked = -1
        if isinstance(verdict, Reply):
            self.done(verdict)
        elif isinstance(verdict, Continue):
            self._run(index + 1)
        else:
            self.done(FILTER_FAILED)  # a filter may stop once per call, not from its resume


def response_head_verdict(
    filters: Sequence[Filter], ctx: RequestContext, head: ResponseHead
) -> Continue | Reply:
    """The response-head hook, run at once (the upstream's bytes keep coming: no filter may
    wait there yet; a `Stop` is a filter error)."""
    result: list[Continue | Reply] = []
    run = ChainRun(filters, lambda f, resume: f.on_response_head(ctx, head, resume), result.append)
    if not run.start():
        run.parked = -1  # a later resume is refused
        return FILTER_FAILED
    return result[0]
