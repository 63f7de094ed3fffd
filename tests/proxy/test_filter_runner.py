"""The filter runner in-process: filters run in order, a `Stop` parks the chain until the
filter resumes it (later, from elsewhere), a `Reply` answers at any hook, and a filter that
raises or returns nonsense ends the run in a counted 500, never an exception to its caller; the
end of an exchange is told to each filter that implements `on_exchange_done`, one that raises
there not keeping it from the next."""

from __future__ import annotations

from typing import Any

import pytest

from outwork.filters import CONTINUE, Continue, Filter, Reply, Resume, Stop, Verdict
from outwork.filters.runner import (
    FILTER_FAILED,
    Chain,
    ChainRun,
    Hooks,
    report_done,
    response_head_verdict,
    run,
)
from outwork.http.messages import Framing, RequestHead, ResponseHead
from outwork.observe.refusals import Refusal

HOOKS = ("on_request_head", "on_request_body", "on_response_head", "on_response_body")
FORBIDDEN = Reply(403, Refusal.BAD_REQUEST)


class Scripted(Filter):
    """Answers `verdict` at `hook`, continues at the others, and keeps its resume callback."""

    __slots__ = ("name", "hook", "verdict", "seen", "resume")

    def __init__(self, name: str, seen: list[str], hook: str = "", verdict: Any = CONTINUE):
        self.name, self.seen, self.hook, self.verdict = name, seen, hook, verdict
        self.resume: Resume | None = None

    def _answer(self, hook: str, resume: Resume) -> Verdict:
        self.seen.append(self.name)
        self.resume = resume
        if hook != self.hook:
            return CONTINUE
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict  # type: ignore[no-any-return]

    def on_request_head(self, ctx: Any, head: RequestHead, resume: Resume) -> Verdict:
        return self._answer("on_request_head", resume)

    def on_request_body(self, ctx: Any, chunk: bytes, end: bool, resume: Resume) -> Verdict:
        return self._answer("on_request_body", resume)

    def on_response_head(self, ctx: Any, head: ResponseHead, resume: Resume) -> Verdict:
        return self._answer("on_response_head", resume)

    def on_response_body(self, ctx: Any, chunk: bytes, end: bool, resume: Resume) -> Verdict:
        return self._answer("on_response_body", resume)


REQUEST = RequestHead(b"GET", b"/", "1.1", [(b"host", b"a")], b"", Framing.NONE, -1, True, False)
RESPONSE = ResponseHead(200, b"OK", b"", Framing.LENGTH, 0)
CTX: Any = None  # the runner passes the context through; these filters do not read it


ARGS = {
    "on_request_head": (REQUEST,),
    "on_request_body": (b"chunk", True),
    "on_response_head": (RESPONSE,),
    "on_response_body": (b"chunk", False),
}


def _run(filters: list[Filter], hook: str) -> tuple[list[Continue | Reply], bool]:
    """The outcomes the run gave (at once, or once resumed), and whether it finished at once."""
    outcome: list[Continue | Reply] = []
    result = run(Hooks(filters, hook), CTX, *ARGS[hook])
    if isinstance(result, ChainRun):
        result.done = outcome.append
        return outcome, False
    outcome.append(result)
    return outcome, True


@pytest.mark.parametrize("hook", HOOKS)
def test_a_reply_at_any_hook_answers_and_skips_the_rest(hook: str) -> None:
    seen: list[str] = []
    filters: list[Filter] = [Scripted("a", seen), Scripted("b", seen, hook, FORBIDDEN)]
    filters.append(Scripted("c", seen))
    outcome, finished = _run(filters, hook)
    assert finished and outcome == [FORBIDDEN] and seen == ["a", "b"]


@pytest.mark.parametrize("hook", HOOKS)
def test_a_stop_parks_the_chain_until_resumed_later(hook: str) -> None:
    seen: list[str] = []
    waiting = Scripted("b", seen, hook, Stop())
    filters: list[Filter] = [Scripted("a", seen), waiting, Scripted("c", seen)]
    outcome, finished = _run(filters, hook)
    assert not finished and outcome == [] and seen == ["a", "b"]
    assert waiting.resume is not None
    waiting.resume(CONTINUE)  # e.g. from a timer or a lookup's answer
    assert outcome == [CONTINUE] and seen == ["a", "b", "c"]
    with pytest.raises(RuntimeError):
        waiting.resume(CONTINUE)  # once only


def test_a_stopped_filter_may_resume_with_a_reply() -> None:
    seen: list[str] = []
    waiting = Scripted("a", seen, "on_request_head", Stop())
    outcome, _ = _run([waiting, Scripted("b", seen)], "on_request_head")
    assert waiting.resume is not None
    waiting.resume(FORBIDDEN)
    assert outcome == [FORBIDDEN] and seen == ["a"]


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("bad", [ValueError("bug"), "not a verdict"])
def test_a_failing_filter_ends_in_a_500_counted_as_filter_error(hook: str, bad: Any) -> None:
    seen: list[str] = []
    outcome, finished = _run([Scripted("a", seen, hook, bad), Scripted("b", seen)], hook)
    assert finished and outcome == [FILTER_FAILED] and seen == ["a"]
    assert FILTER_FAILED.status == 500 and FILTER_FAILED.refusal is Refusal.FILTER_ERROR


def test_the_response_head_hook_may_not_wait_yet() -> None:
    seen: list[str] = []
    assert response_head_verdict(Chain([Scripted("a", seen)]), CTX, RESPONSE) == CONTINUE
    waiting = Scripted("a", seen, "on_response_head", Stop())
    assert response_head_verdict(Chain([waiting]), CTX, RESPONSE) == FILTER_FAILED
    assert waiting.resume is not None
    with pytest.raises(RuntimeError):
        waiting.resume(CONTINUE)  # too late: the run ended


class HeadOnly(Filter):
    """Implements the request head only; says it does nothing at the response head when told."""

    __slots__ = ("seen", "quiet")

    def __init__(self, seen: list[str], quiet: bool = False) -> None:
        self.seen, self.quiet = seen, quiet

    def implements(self, hook: str) -> bool:
        return not (self.quiet and hook == "on_request_head") and super().implements(hook)

    def on_request_head(self, ctx: Any, head: RequestHead, resume: Resume) -> Verdict:
        self.seen.append("head")
        return CONTINUE


def test_a_chain_calls_only_the_filters_that_implement_a_hook() -> None:
    seen: list[str] = []
    plain, quiet = HeadOnly(seen), HeadOnly(seen, quiet=True)
    chain = Chain([plain, quiet, Scripted("s", seen)])
    assert tuple(chain) == (plain, quiet, chain[2])  # still the route's filters, in order
    assert chain.request_head.filters == (plain, chain[2])
    assert chain.response_head.filters == (chain[2],)
    assert not chain.inspects_request_body and chain.request_body.filters == ()
    assert run(chain.request_head, CTX, REQUEST) is CONTINUE
    assert seen == ["head", "s"]


def test_a_resume_from_a_filter_that_did_not_stop_is_refused_and_a_run_may_wait_twice() -> None:
    seen: list[str] = []
    first = Scripted("a", seen, "on_request_head", Stop())
    second = Scripted("b", seen, "on_request_head", Stop())
    passing = Scripted("c", seen)
    result = run(Hooks([passing, first, second], "on_request_head"), CTX, REQUEST)
    assert isinstance(result, ChainRun) and result.filter is first
    outcome: list[Continue | Reply] = []
    result.done = outcome.append
    assert passing.resume is not None and first.resume is not None
    with pytest.raises(RuntimeError):
        passing.resume(CONTINUE)  # it continued: it has nothing to resume
    first.resume(CONTINUE)
    assert result.filter is second and outcome == []  # waits again, in the same run
    assert second.resume is not None
    second.resume(FORBIDDEN)
    assert outcome == [FORBIDDEN] and seen == ["c", "a", "b"]


def test_an_abandoned_run_ignores_a_late_resume() -> None:
    waiting = Scripted("a", [], "on_request_head", Stop())
    result = run(Hooks([waiting], "on_request_head"), CTX, REQUEST)
    assert isinstance(result, ChainRun)
    outcome: list[Continue | Reply] = []
    result.done = outcome.append
    result.abandon()
    assert waiting.resume is not None
    waiting.resume(CONTINUE)
    assert outcome == []


class Reporting(Filter):
    """Told when the exchange is over; `fails` raises there."""

    __slots__ = ("name", "seen", "fails")

    def __init__(self, name: str, seen: list[str], fails: bool = False) -> None:
        self.name, self.seen, self.fails = name, seen, fails

    def on_exchange_done(self, ctx: Any) -> None:
        self.seen.append(self.name)
        if self.fails:
            raise RuntimeError("a report that fails")


def test_exchange_done_tells_each_filter_that_implements_it_whatever_the_others_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []
    chain = Chain([Reporting("a", seen, fails=True), Scripted("quiet", seen), Reporting("b", seen)])
    assert [f.name for f in chain.exchange_done.filters] == ["a", "b"]  # type: ignore[attr-defined]
    report_done(chain.exchange_done, CTX)
    assert seen == ["a", "b"]  # the one that raised did not stop the next
    assert "a report that fails" in capsys.readouterr().err
