"""Running one hook of a chain for one exchange: filter after filter until one answers or waits.

A route's filters are compiled once, at config load, into a `Chain`: for each hook, the filters
that do something there (`Filter.implements`) and their bound methods. `run` calls them in
order, right away: it returns CONTINUE after the last, or the first `Reply`, and allocates
nothing but the `resume` callback each filter is handed. Only a filter's `Stop` makes a
`ChainRun`, what the exchange parks in: calling that filter's `resume` with `CONTINUE` runs the
rest of the chain, with a `Reply` answers, and either way the run's `done` gets the outcome.

A filter that raises is never the client's business: the run ends in a 500 counted as
`Refusal.FILTER_ERROR` (the exception goes to stderr for the operator). A run the exchange
gave up on (the client went away, or the filter took too long) is `abandon`ed: a resume after
that does nothing.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any, Final

from outwork.filters.api import CONTINUE, Continue, Filter, Reply, RequestContext, Stop, Verdict
from outwork.http.messages import ResponseHead
from outwork.native import mypyc_attr
from outwork.observe.refusals import Refusal

FILTER_FAILED: Final = Reply(500, Refusal.FILTER_ERROR)

ABANDONED: Final = -2  # `ChainRun.parked` once the exchange stopped waiting for the filter


class Hooks:
    """One hook of a chain: the filters that implement it, in chain order, and their bound
    methods (called with the hook's arguments and a `resume` callback)."""

    __slots__ = ("filters", "calls")

    def __init__(self, filters: Iterable[Filter], hook: str) -> None:
        self.filters = tuple(f for f in filters if f.implements(hook))
        self.calls: tuple[Callable[..., Verdict], ...] = tuple(
            getattr(f, hook) for f in self.filters
        )


# A Python class even when compiled (mypyc's native classes cannot extend tuple): routes hold
# it as their `filters` tuple.
@mypyc_attr(native_class=False)
class Chain(tuple[Filter, ...]):
    """A route's filters (`RouteConfig.filters`, a tuple: default policies first), with each
    hook's calls worked out once."""

    request_head: Hooks
    request_body: Hooks  # of the filters that inspect the request body
    response_head: Hooks
    response_body: Hooks  # of the filters that inspect response bodies
    exchange_done: Hooks  # of the filters told when the exchange is over
    inspects_request_body: bool  # the request body goes through the filters

    def __init__(self, filters: Iterable[Filter] = ()) -> None:
        # tuple's __new__ took `filters` (mypyc compiles no __new__ of a Python class): the
        # chain reads itself, not `filters`, which may be an iterator spent by now.
        self.request_head = Hooks(self, "on_request_head")
        inspecting = [f for f in self if f.inspects_request_body]
        self.request_body = Hooks(inspecting, "on_request_body")
        self.response_head = Hooks(self, "on_response_head")
        self.response_body = Hooks(
            [f for f in self if f.inspects_response_body], "on_response_body"
        )
        self.exchange_done = Hooks(self, "on_exchange_done")
        self.inspects_request_body = bool(inspecting)


NO_FILTERS: Final = Chain()


def chain_of(filters: tuple[Filter, ...]) -> Chain:
    """The compiled chain of `filters` (the loader compiles routes' already)."""
    return filters if isinstance(filters, Chain) else Chain(filters)


class ChainRun:
    """A hook's run that a filter made wait. `done` (set by whoever parks the exchange) gets
    the outcome once the rest of the chain has run."""

    __slots__ = ("hooks", "args", "box", "done", "parked")

    def __init__(self, hooks: Hooks, args: tuple[Any, ...], box: list[ChainRun | None]) -> None:
        self.hooks = hooks
        self.args = args
        self.box = box  # what the run's resume callbacks find it in
        self.done: Callable[[Continue | Reply], None] = _no_one_waits
        self.parked = -1  # the index of the filter waiting, -1: none

    @property
    def filter(self) -> Filter | None:
        """The filter waiting, if one is."""
        index = self.parked
        filters = self.hooks.filters
        return filters[index] if 0 <= index < len(filters) else None

    def abandon(self) -> None:
        """The exchange waits no more (gone, or answered): a later resume does nothing."""
        self.parked = ABANDONED

    def resume(self, index: int, verdict: Verdict) -> None:
        if self.parked != index:
            if self.parked == ABANDONED:
                return  # too late: the exchange was answered or cancelled meanwhile
            raise RuntimeError("resume called by a filter that is not waiting")
        self.parked = -1
        if isinstance(verdict, Reply):
            self.done(verdict)
        elif isinstance(verdict, Continue):
            outcome = _run(self.hooks, self.args, index + 1, self.box)
            if outcome is not self:
                self.done(outcome)  # type: ignore[arg-type]
        else:
            self.done(FILTER_FAILED)  # a filter may stop once per call, not from its resume


def _no_one_waits(verdict: Continue | Reply) -> None:
    raise RuntimeError("a chain run was parked without a `done`")


class Resumer:
    """The `resume` callback one filter of one run is handed: it resumes the run only while
    this filter is the one waiting."""

    __slots__ = ("box", "index")

    def __init__(self, box: list[ChainRun | None], index: int) -> None:
        self.box = box
        self.index = index

    def __call__(self, verdict: Verdict) -> None:
        run = self.box[0]
        if run is None:  # no filter of this run stopped (yet): this one did not
            raise RuntimeError("resume called by a filter that is not waiting")
        run.resume(self.index, verdict)


def run(hooks: Hooks, *args: Any) -> Continue | Reply | ChainRun:
    """Run `hooks` with `args` (the exchange first): CONTINUE after the last filter, the first
    `Reply`, or the `ChainRun` a filter's `Stop` parked (its `done` is the caller's to set)."""
    if not hooks.calls:
        return CONTINUE
    return _run(hooks, args, 0, [None])


def _run(
    hooks: Hooks, args: tuple[Any, ...], index: int, box: list[ChainRun | None]
) -> Continue | Reply | ChainRun:
    calls = hooks.calls
    count = len(calls)
    arity = len(args)
    while index < count:
        call = calls[index]
        resume = Resumer(box, index)
        try:
            # The hooks' own arities spelt out: a direct call, not one through a new tuple.
            if arity == 2:
                verdict = call(args[0], args[1], resume)
            elif arity == 3:
                verdict = call(args[0], args[1], args[2], resume)
            else:
                verdict = call(*args, resume)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return FILTER_FAILED
        if verdict is CONTINUE:
            index += 1
        elif isinstance(verdict, Reply):
            return verdict
        elif isinstance(verdict, Stop):
            parked = box[0]
            if parked is None:
                parked = box[0] = ChainRun(hooks, args, box)
            parked.parked = index
            return parked
        elif isinstance(verdict, Continue):
            index += 1
        else:
            print(f"outwork: filter {hooks.filters[index]!r} returned {verdict!r}", file=sys.stderr)
            return FILTER_FAILED
    return CONTINUE


def response_head_verdict(
    filters: tuple[Filter, ...], ctx: RequestContext, head: ResponseHead
) -> Continue | Reply:
    """The response-head hook, run at once (the upstream's bytes keep coming: no filter may
    wait there yet; a `Stop` is a filter error)."""
    hooks = (filters if isinstance(filters, Chain) else Chain(filters)).response_head
    if not hooks.calls:
        return CONTINUE
    outcome = _run(hooks, (ctx, head), 0, [None])
    if isinstance(outcome, ChainRun):
        outcome.parked = -1  # a later resume is refused
        return FILTER_FAILED
    return outcome


def report_done(hooks: Hooks, ctx: RequestContext) -> None:
    """The `on_exchange_done` hooks of a chain, each on its own: one that raises is the
    operator's business (stderr), not the others', and the exchange is long answered."""
    for call in hooks.calls:
        try:
            call(ctx)
        except Exception:
            traceback.print_exc(file=sys.stderr)
