"""The `waf` policy step in process (hooks called with a small context, as the gateway calls
them): 403 `waf_blocked` with a `waf.blocked` event naming rules, messages and score; `detect`
lets the request through with `waf.detected`; the body up to `body_limit`; the family counter;
the config refuses what it cannot load, at its key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

import outwork.filters.steps  # noqa: F401  (the step registry, in chain order)
from outwork.config.load import load_config
from outwork.config.source import ConfigError
from outwork.filters import CONTINUE, Identity, Reply, Verdict
from outwork.filters.waf import WafSpec, build
from outwork.http.messages import Framing, RequestHead
from outwork.observe.metrics import Metrics
from outwork.observe.refusals import Refusal
from outwork.waf import counters


@dataclass
class Context:
    identity: Identity | None = None
    filter_state: dict[int, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    client_ip: str = "192.0.2.1"
    peer: str = "192.0.2.1:40000"
    listener_name: str = "public"
    route_name: str = "api"
    client_certificate: None = None
    now: float = 0.0

    def security_event(self, event: str, detail: dict[str, Any]) -> None:
        self.events.append((event, detail))


def head(method: bytes, target: bytes, body: bytes = b"", content_type: bytes = b"") -> RequestHead:
    headers = [(b"Host", b"api.example"), (b"User-Agent", b"curl/8.5"), (b"Accept", b"*/*")]
    if body:
        headers += [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())]
    return RequestHead(
        method=method,
        target=target,
        version="1.1",
        headers=headers,
        block=b"",
        framing=Framing.LENGTH if body else Framing.NONE,
        content_length=len(body) if body else -1,
        keep_alive=True,
        expect_continue=False,
    )


def never(verdict: Verdict) -> None:
    raise AssertionError("the WAF answers at once: it never parks the exchange")


def send(
    spec: dict[str, Any],
    method: bytes,
    target: bytes,
    body: bytes = b"",
    content_type: bytes = b"application/x-www-form-urlencoded",
    chunk: int = 5,
) -> tuple[Verdict, Context]:
    waf = build(msgspec.convert(spec, WafSpec, strict=True))
    ctx = Context()
    verdict = waf.on_request_head(ctx, head(method, target, body, content_type), never)
    if verdict is not CONTINUE or not body:
        return verdict, ctx
    for start in range(0, len(body), chunk):
        verdict = waf.on_request_body(ctx, body[start : start + chunk], False, never)
        if verdict is not CONTINUE:
            return verdict, ctx
    return waf.on_request_body(ctx, b"", True, never), ctx


def test_attack_in_the_query_is_refused_with_rules_and_score() -> None:
    verdict, ctx = send({}, b"GET", b"/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
    assert isinstance(verdict, Reply)
    assert (verdict.status, verdict.refusal) == (403, Refusal.WAF_BLOCKED)
    ((event, detail),) = ctx.events
    assert event == "waf.blocked" and detail == verdict.detail
    assert 941100 in detail["rule_ids"] and detail["score"] >= 5
    assert any("XSS" in message for message in detail["messages"])


def test_attack_in_the_body_is_refused_at_its_end() -> None:
    verdict, ctx = send({}, b"POST", b"/login", b"user=admin' or '1'='1'-- &password=x")
    assert isinstance(verdict, Reply) and verdict.refusal is Refusal.WAF_BLOCKED
    assert 942100 in ctx.events[0][1]["rule_ids"]


def test_benign_requests_pass() -> None:
    assert send({}, b"GET", b"/api/orders?page=2&sort=date")[0] is CONTINUE
    body = b'{"name": "Alice", "items": [1, 2, 3]}'
    verdict, ctx = send({}, b"POST", b"/api/orders", body, b"application/json")
    assert verdict is CONTINUE and ctx.events == []


def test_detect_mode_reports_and_lets_through() -> None:
    verdict, ctx = send({"mode": "detect"}, b"GET", b"/?file=../../../../etc/passwd")
    assert verdict is CONTINUE
    ((event, detail),) = ctx.events
    assert event == "waf.detected" and 930100 in detail["rule_ids"]


def test_body_beyond_the_limit_rejected_or_inspected_in_part() -> None:
    body = b"a=" + b"x" * 2000 + b"&q=1' or '1'='1"
    verdict, _ = send(
        {"body_limit": 1024, "on_body_limit": "reject"}, b"POST", b"/", body, chunk=512
    )
    assert isinstance(verdict, Reply) and (verdict.status, verdict.refusal) == (
        413,
        Refusal.CONTENT_TOO_LARGE,
    )
    # process_partial: the attack past the limit is not seen, the one within it is.
    assert send({"body_limit": 1024}, b"POST", b"/", body, chunk=512)[0] is CONTINUE
    early = b"q=1' or '1'='1&a=" + b"x" * 2000
    assert isinstance(send({"body_limit": 1024}, b"POST", b"/", early, chunk=512)[0], Reply)


def test_a_body_with_more_arguments_than_inspected_is_refused() -> None:
    many = b"&".join(b"f%d=1" % n for n in range(1001))
    verdict, ctx = send({}, b"POST", b"/form", many, chunk=4096)
    assert isinstance(verdict, Reply) and (verdict.status, verdict.refusal) == (
        413,
        Refusal.CONTENT_TOO_LARGE,
    )
    assert ctx.events[0][0] == "waf.blocked" and ctx.events[0][1]["args_limit"] == 1000
    json_many = b"[" + b",".join(b"1" for _ in range(1001)) + b"]"
    assert isinstance(send({}, b"POST", b"/j", json_many, b"application/json", 4096)[0], Reply)
    enough = b"&".join(b"f%d=1" % n for n in range(1000))
    assert send({}, b"POST", b"/form", enough, chunk=4096)[0] is CONTINUE


def test_paranoia_level_and_threshold_come_from_the_config() -> None:
    # 920271 (control characters in an argument) is a paranoia level 2 rule.
    assert send({}, b"GET", b"/?test=test1%03")[0] is CONTINUE
    verdict, ctx = send({"paranoia_level": 2}, b"GET", b"/?test=test1%03")
    assert isinstance(verdict, Reply) and 920271 in ctx.events[0][1]["rule_ids"]
    xss = b"/?q=%3Cscript%3Ealert(1)%3C/script%3E"
    assert send({"anomaly_threshold": 100}, b"GET", xss)[0] is CONTINUE


def test_matches_are_counted_by_family_from_zero() -> None:
    text = Metrics().render().decode()
    assert 'outwork_waf_matches_total{family="942"}' in text
    assert 'outwork_waf_matches_total{family="941"}' in text
    before = counters.MATCHES["930"]
    send({"mode": "detect"}, b"GET", b"/?file=../../../../etc/passwd")
    assert counters.MATCHES["930"] > before


BASE = """\
listeners: [{name: public, bind: "127.0.0.1:0"}]
routes: [{match: {path_prefix: /}, upstream: u, policies: [p]}]
upstreams: {u: {targets: ["http://127.0.0.1:9000"]}}
"""


def problems(tmp_path: Path, policy: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + "policies: {p: {waf: " + policy + "}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.format() for p in info.value.problems]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{paranoia_level: 5}", "paranoia_level"),
        ("{mode: audit}", "mode"),
        ("{body_limit: lots}", "invalid size"),
        ("{rules: /nonexistent}", "is not a folder"),
        ("{exclusions: [/nonexistent.conf]}", "is not a file"),
    ],
)
def test_the_config_refuses_what_it_cannot_load(tmp_path: Path, policy: str, expected: str) -> None:
    found = problems(tmp_path, policy)
    assert any("policies.p.waf" in p and expected in p for p in found), found


def test_a_bad_exclusion_file_is_refused_at_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text('# exclusions\nSecRule ARGS "@nope" "id:1"\n')
    found = problems(tmp_path, "{exclusions: [" + str(bad) + "]}")
    assert any(f"{bad}:2: unknown operator" in p for p in found), found


def test_the_config_builds_the_filter_after_threat_protection(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + "policies: {p: {waf: {paranoia_level: 2}, headers: {add: {A: b}}}}\n")
    filters = load_config(path).routes[0].filters
    assert [type(f).__name__ for f in filters] == ["HeadersFilter", "WafFilter"]
