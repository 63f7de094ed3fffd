"""The `waf` step's response hooks in process (called with a small context, as the gateway
calls them): phase 3 at the head, phase 4 on the held body; which responses are held (their
type, their framing, compression); the body up to `response_body_limit` whatever its chunking
(a property); a request reported in `detect` mode still gets its response inspected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.filters import CONTINUE, Reply, Verdict
from outwork.filters.waf import WafSpec
from outwork.http.messages import Framing, ResponseHead
from outwork.observe.refusals import Refusal
from outwork.waf.step import WafFilter, build_filter
from tests.waf.test_waf_filter import Context, head, never

SQL_ERROR = b"<p>You have an error in your SQL syntax; check the manual near '1' at line 1</p>"


def response(
    body: bytes, content_type: bytes = b"text/html", status: int = 200, extra: bytes = b""
) -> ResponseHead:
    block = b"content-type: " + content_type + b"\r\n" + extra
    framing = Framing.LENGTH if body else Framing.NONE
    return ResponseHead(status, b"OK", block, framing, len(body) if body else -1)


def waf_of(**spec: Any) -> WafFilter:
    return build_filter(msgspec.convert(spec, WafSpec, strict=True))


def answer(
    waf: WafFilter, resp: ResponseHead, body: bytes, chunk: int = 7, ctx: Context | None = None
) -> tuple[Verdict, Context, int]:
    """The request (a benign GET), then the response: its head, then its body in chunks until
    the filter decides or the body ends. Also: how many body bytes the filter asked to hold."""
    ctx = ctx or Context()
    assert waf.on_request_head(ctx, head(b"GET", b"/orders?page=2"), never) is CONTINUE
    verdict = waf.on_response_head(ctx, resp, never)
    limit = waf.response_body_limit(ctx, resp)
    if verdict is not CONTINUE or not limit:
        return verdict, ctx, limit
    for start in range(0, len(body), chunk):
        verdict = waf.on_response_body(ctx, body[start : start + chunk], False, never)
        if verdict is not CONTINUE:
            return verdict, ctx, limit
    return waf.on_response_body(ctx, b"", True, never), ctx, limit


def test_an_sql_error_page_is_refused_at_phase_4() -> None:
    verdict, ctx, limit = answer(waf_of(), response(SQL_ERROR), SQL_ERROR)
    assert limit == 512 * 1024
    assert isinstance(verdict, Reply) and (verdict.status, verdict.refusal) == (
        403,
        Refusal.WAF_BLOCKED,
    )
    ((event, detail),) = ctx.events
    assert event == "waf.response_blocked" and detail["phase"] == 4
    assert {951230, 959100} <= set(detail["rule_ids"]) and detail["outbound_score"] >= 4


def test_not_held_other_types_compressed_and_bodiless() -> None:
    waf = waf_of()
    octets = response(SQL_ERROR, b"application/octet-stream")
    gzipped = response(SQL_ERROR, extra=b"content-encoding: gzip\r\n")
    for resp in (octets, gzipped, response(b"", status=204)):
        verdict, ctx, limit = answer(waf, resp, SQL_ERROR)
        assert (verdict, limit, ctx.events) == (CONTINUE, 0, [])
    custom = waf_of(response_mime_types=["application/octet-stream"])
    assert isinstance(answer(custom, octets, SQL_ERROR)[0], Reply)
    assert answer(waf_of(response_mime_types=[]), response(SQL_ERROR), SQL_ERROR)[2] == 0


def test_a_5xx_is_judged_at_the_head_at_paranoia_level_2() -> None:
    verdict, ctx, limit = answer(waf_of(paranoia_level=2), response(b"", status=503), b"")
    assert isinstance(verdict, Reply) and limit == 0
    assert 950100 in ctx.events[0][1]["rule_ids"] and ctx.events[0][1]["status"] == 503


def test_detect_mode_request_then_response() -> None:
    """A request reported in `detect` mode (its would-be block forgotten) still has its
    response inspected, and reported on its own."""
    waf = waf_of(mode="detect")
    ctx = Context()
    attack = head(b"GET", b"/?file=../../../../etc/passwd")
    assert waf.on_request_head(ctx, attack, never) is CONTINUE
    assert waf.on_response_head(ctx, response(SQL_ERROR), never) is CONTINUE
    assert waf.on_response_body(ctx, SQL_ERROR, False, never) is CONTINUE
    assert waf.on_response_body(ctx, b"", True, never) is CONTINUE
    assert [e for e, _ in ctx.events] == ["waf.detected", "waf.detected"]
    assert ctx.events[1][1]["phase"] == 4 and 951230 in ctx.events[1][1]["rule_ids"]


def test_beyond_the_limit_reject_answers_502() -> None:
    body = SQL_ERROR + b"x" * 4096
    waf = waf_of(response_body_limit="1KiB", on_response_body_limit="reject")
    verdict, _, _ = answer(waf, response(body), body, chunk=512)
    assert isinstance(verdict, Reply) and (verdict.status, verdict.refusal) == (
        502,
        Refusal.RESPONSE_TOO_LARGE,
    )


@settings(max_examples=40, deadline=None)
@given(
    pad=st.integers(0, 3000),
    limit=st.integers(64, 2048),
    chunk=st.integers(1, 1500),
)
def test_phase_4_reads_the_first_limit_bytes_whatever_the_chunking(
    pad: int, limit: int, chunk: int
) -> None:
    """`process_partial`: a leak wholly inside the first `response_body_limit` bytes is
    refused, one that starts past them is not seen, however the body is cut into chunks; the
    filter decides once."""
    body = b"x" * pad + SQL_ERROR + b"y" * 500
    waf = waf_of(response_body_limit=limit)
    verdict, ctx, held = answer(waf, response(body), body, chunk)
    assert held == limit
    inside = pad + len(SQL_ERROR) <= limit
    outside = pad >= limit
    if inside:
        assert isinstance(verdict, Reply) and verdict.status == 403
    elif outside:
        assert verdict is CONTINUE and ctx.events == []
    assert len(ctx.events) <= 1
    # Once decided, the rest of the body is not looked at again.
    assert waf.on_response_body(ctx, SQL_ERROR, False, never) is CONTINUE


def test_an_exchange_a_rule_let_go_is_not_held(tmp_path: Path) -> None:
    """`ctl:ruleEngine=Off` for a path (an exclusion): its responses stream unheld, leak or
    not; other paths are still inspected."""
    exclusion = tmp_path / "exclusions.conf"
    exclusion.write_text(
        'SecRule REQUEST_FILENAME "@beginsWith /orders" '
        '"id:1000,phase:1,pass,nolog,ctl:ruleEngine=Off"\n'
    )
    waf = waf_of(exclusions=[str(exclusion)])
    assert answer(waf, response(SQL_ERROR), SQL_ERROR)[:3:2] == (CONTINUE, 0)
    ctx = Context()
    assert waf.on_request_head(ctx, head(b"GET", b"/reports"), never) is CONTINUE
    assert waf.on_response_head(ctx, response(SQL_ERROR), never) is CONTINUE
    assert waf.response_body_limit(ctx, response(SQL_ERROR)) > 0
