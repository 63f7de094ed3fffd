"""The `waf` policy step at work: the filter that runs the engine's phases over an exchange
(phases 1 and 2 on the request, 3 and 4 on the response, 5 once it is over). Its config is
`outwork.filters.waf.WafSpec`; this module, and the engine with it, is imported only when a
config has a `waf` step."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from outwork.filters import (
    CONTINUE,
    Filter,
    Reply,
    RequestContext,
    Resume,
    Verdict,
)
from outwork.filters.waf import (
    DEFAULT_RESPONSE_BODY_LIMIT,
    DEFAULT_RESPONSE_MIME_TYPES,
    MAX_EVENT_PATH,
    MAX_EVENT_RULES,
    RESPONSE_PROTOCOL,
    WafSpec,
    parse_size,
)
from outwork.http.messages import Framing, RequestHead, ResponseHead
from outwork.observe.refusals import Refusal
from outwork.waf import counters
from outwork.waf.engine import Setup, Transaction, Waf
from outwork.waf.request import MAX_BODY_ARGS, WafRequest
from outwork.waf.response import WafResponse


@lru_cache(maxsize=8)
def compiled(
    rules: Path, setup: Setup, exclusions: tuple[tuple[Path, float], ...], _: float
) -> Waf:
    """One compiled rule set per distinct config (a reload with the same files reuses it;
    the modification times in the key make an edited file load again)."""
    return Waf.load(rules, setup, [path for path, _ in exclusions])


@dataclass(slots=True)
class _State:
    transaction: Transaction
    head: RequestHead  # for the report of phase 5
    body: bytearray = field(default_factory=bytearray)
    decided: bool = False  # phase 2 ran (or the request was refused)
    # The response: what phase 4 reads, its held body, and where its matches start.
    response: WafResponse | None = None
    response_body: bytearray = field(default_factory=bytearray)
    response_decided: bool = True  # phase 4 ran, or is not to run on a held body
    response_matches: int = 0


@dataclass(frozen=True, slots=True)
class WafFilter(Filter):
    waf: Waf
    detect: bool
    body_limit: int
    reject_beyond_limit: bool
    response_limit: int = DEFAULT_RESPONSE_BODY_LIMIT
    reject_beyond_response_limit: bool = False
    response_mime_types: frozenset[bytes] = frozenset(
        t.encode() for t in DEFAULT_RESPONSE_MIME_TYPES
    )

    inspects_request_body = True
    inspects_response_body = True

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        client_ip = ctx.client_ip
        port = ctx.peer.rpartition(":")[2]
        request = WafRequest(
            method=head.method,
            target=head.target,
            protocol=b"HTTP/" + head.version.encode(),
            headers=list(head.headers),
            client_ip=client_ip,
            client_port=int(port) if port.isdigit() else 0,
        )
        transaction = self.waf.transaction(request)
        state = _State(transaction, head)
        ctx.filter_state[id(self)] = state  # the response phases need the transaction too
        verdict = self._phase(ctx, state, 1)
        if verdict is not CONTINUE:
            return verdict
        if head.framing is Framing.NONE:
            return self._phase(ctx, state, 2)
        return CONTINUE

    def on_request_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        state: _State | None = ctx.filter_state.get(id(self))
        if state is None or state.decided:
            return CONTINUE
        room = self.body_limit - len(state.body)
        if len(chunk) > room:
            if self.reject_beyond_limit:
                state.decided = True
                detail = {"body_limit": self.body_limit}
                return Reply(413, Refusal.CONTENT_TOO_LARGE, detail=detail)
            state.body += chunk[:room]
            state.transaction.vars.request.body_complete = False
            return self._phase(ctx, state, 2)
        state.body += chunk
        if end:
            return self._phase(ctx, state, 2)
        return CONTINUE

    def _phase(self, ctx: RequestContext, state: _State, phase: int) -> Verdict:
        transaction = state.transaction
        if phase == 2:
            state.decided = True
            transaction.vars.request.body = bytes(state.body)
        transaction.run_phase(phase)
        body = transaction.vars.body
        if body is not None and body.too_many_args:
            # Not inspected past its first arguments: refused (an attack would otherwise hide
            # behind a thousand harmless fields), as ModSecurity's SecArgumentsLimit with its
            # recommended REQBODY_ERROR rule.
            state.decided = True
            detail = {**_detail(transaction), "args_limit": MAX_BODY_ARGS}
            if self.detect:
                ctx.security_event("waf.detected", detail)
                return CONTINUE
            ctx.security_event("waf.blocked", detail)
            return Reply(413, Refusal.CONTENT_TOO_LARGE, detail=detail)
        decision = transaction.would_interrupt
        if decision is None and phase == 1:
            return CONTINUE
        if phase == 2 or decision is not None:
            state.decided = True
            for match in transaction.matches:
                if match.log:
                    counters.MATCHES[counters.family(match.id)] += 1
        if decision is None:
            return CONTINUE
        detail = _detail(transaction)
        if self.detect:
            ctx.security_event("waf.detected", detail)
            return CONTINUE
        ctx.security_event("waf.blocked", detail)
        return Reply(403, Refusal.WAF_BLOCKED, detail=detail)

    # The response: phase 3 at its head, phase 4 at its end (or at its head, unheld).

    def on_response_head(self, ctx: RequestContext, head: ResponseHead, resume: Resume) -> Verdict:
        state: _State | None = ctx.filter_state.get(id(self))
        if state is None:
            return CONTINUE
        transaction = state.transaction
        if transaction.engine_off or transaction.allowed:
            return CONTINUE  # a rule let this exchange go (`allow`, `ctl:ruleEngine=Off`)
        response = WafResponse(head.status, RESPONSE_PROTOCOL, head.headers, head.content_length)
        transaction.respond(response)
        state.response = response
        state.response_matches = len(transaction.matches)
        state.response_decided = False
        verdict = self._response_phase(ctx, state, 3)
        if verdict is not CONTINUE or state.response_decided:
            return verdict
        if not self._inspects(head, response):
            return self._response_phase(ctx, state, 4)  # RESPONSE_BODY not inspected: none
        return CONTINUE

    def response_body_limit(self, ctx: RequestContext, head: ResponseHead) -> int:
        state: _State | None = ctx.filter_state.get(id(self))
        if state is None or state.response_decided:
            return 0
        return self.response_limit

    def on_response_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        state: _State | None = ctx.filter_state.get(id(self))
        if state is None or state.response_decided or state.response is None:
            return CONTINUE
        room = self.response_limit - len(state.response_body)
        if len(chunk) > room:
            if self.reject_beyond_response_limit:
                state.response_decided = True
                detail = {"phase": 4, "response_body_limit": self.response_limit}
                return Reply(502, Refusal.RESPONSE_TOO_LARGE, detail=detail)
            state.response_body += chunk[:room]
            state.response.body_complete = False
            return self._response_phase(ctx, state, 4)
        state.response_body += chunk
        if end:
            return self._response_phase(ctx, state, 4)
        return CONTINUE

    def _inspects(self, head: ResponseHead, response: WafResponse) -> bool:
        """Whether this response's body is held for phase 4: a body of an inspected type,
        not compressed (CRS skips compressed bodies: their rules would read noise)."""
        if head.framing is Framing.NONE or head.content_length == 0:
            return False
        if response.mime_type not in self.response_mime_types:
            return False
        codings = response.header_values(b"content-encoding")
        return all(c.strip().lower() in (b"", b"identity") for c in codings)

    def _response_phase(self, ctx: RequestContext, state: _State, phase: int) -> Verdict:
        transaction = state.transaction
        response = state.response
        if phase == 4 and response is not None and state.response_body:
            response.body = bytes(state.response_body)
            state.response_body = bytearray()  # held once, not twice
        transaction.run_phase(phase)
        decision = transaction.would_interrupt
        if phase == 4 or decision is not None:
            state.response_decided = True
            for match in transaction.matches[state.response_matches :]:
                if match.log:
                    counters.MATCHES[counters.family(match.id)] += 1
        if decision is None:
            return CONTINUE
        logged = [m for m in transaction.matches[state.response_matches :] if m.log]
        logged = logged[:MAX_EVENT_RULES]
        detail = {
            "phase": phase,
            "rule_ids": [m.id for m in logged],
            "messages": [m.msg for m in logged if m.msg],
            "outbound_score": transaction.outbound_anomaly_score,
            "status": response.status if response is not None else None,
        }
        if self.detect:
            ctx.security_event("waf.detected", detail)
            return CONTINUE
        # Its own event: the page leaked, whoever asked for it (`ban.weights` weighs it apart
        # from a refused request, an attack of the client's own).
        ctx.security_event("waf.response_blocked", detail)
        return Reply(403, Refusal.WAF_BLOCKED, detail=detail)

    # Phase 5 (logging), once the exchange is over.

    def on_exchange_done(self, ctx: RequestContext) -> None:
        state: _State | None = ctx.filter_state.pop(id(self), None)
        if state is None:
            return
        transaction = state.transaction
        before = len(transaction.matches)
        transaction.run_logging_phase()
        logged = [m for m in transaction.matches[before:] if m.log]
        if not logged:
            return
        for match in logged:
            counters.MATCHES[counters.family(match.id)] += 1
        logged = logged[:MAX_EVENT_RULES]
        head = state.head
        detail = {
            # Which request, as the refusals' events name it (never the query string): a
            # report of a request let through is the one line that says what scored.
            "method": head.method.decode("latin-1"),
            "path": head.path[:MAX_EVENT_PATH].decode("latin-1"),
            "rule_ids": [m.id for m in logged],
            "messages": [m.msg for m in logged if m.msg],
            "score": transaction.anomaly_score,
            "outbound_score": transaction.outbound_anomaly_score,
        }
        ctx.security_event("waf.report", detail)


def _detail(transaction: Transaction) -> dict[str, Any]:
    logged = [m for m in transaction.matches if m.log][:MAX_EVENT_RULES]
    return {
        "rule_ids": [m.id for m in logged],
        "messages": [m.msg for m in logged if m.msg],
        "score": transaction.anomaly_score,
    }


def build_filter(spec: WafSpec) -> WafFilter:
    return WafFilter(
        waf=compiled(*spec.key()),
        detect=spec.mode == "detect",
        body_limit=parse_size(spec.body_limit),
        reject_beyond_limit=spec.on_body_limit == "reject",
        response_limit=parse_size(spec.response_body_limit),
        reject_beyond_response_limit=spec.on_response_body_limit == "reject",
        response_mime_types=frozenset(t.lower().encode() for t in spec.response_mime_types),
    )
