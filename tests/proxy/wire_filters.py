"""Filter types for the request-pipeline tests only (test_request_filters.py): tiny filters
that refuse on a header, wait and resume, refuse a body with a marker, raise or never resume,
refuse a response body with a marker.

They are registered by `register()` (and removed by `unregister()`) under `test_wire_*` names:
by a fixture in the test process, and by a gateway started with `preload=__name__`
(tests/conftest.py), so that they never leak into other tests.
"""

from __future__ import annotations

import asyncio

import msgspec

from outwork.filters import (
    CONTINUE,
    REGISTRY,
    Filter,
    FilterType,
    Identity,
    Reply,
    RequestContext,
    Resume,
    Stop,
    Verdict,
)
from outwork.filters import (
    register as register_type,
)
from outwork.http.messages import RequestHead, ResponseHead
from outwork.observe.refusals import Refusal


def header(head: RequestHead, name: bytes) -> bytes | None:
    for key, value in head.headers:
        if key.lower() == name:
            return value
    return None


class DenySpec(msgspec.Struct, forbid_unknown_fields=True):
    header: str = "x-deny"


class DenyOnHeader(Filter):
    """403 with its own header and body when the request has `header`; a 204 preflight (a
    reply that is no refusal) for `x-preflight`; who the caller is (for the access log) from
    `x-user`; with `x-deny-response`, a 403 in place of the upstream's answer."""

    __slots__ = ("name",)

    def __init__(self, name: bytes) -> None:
        self.name = name

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        if header(head, b"x-deny-response") is not None:
            ctx.filter_state[id(self)] = True  # refused once the upstream's head is in
        user = header(head, b"x-user")
        if user is not None:
            ctx.identity = Identity("api_key", user.decode())
        if header(head, b"x-preflight") is not None:
            return Reply(204, headers=((b"access-control-allow-origin", b"https://app.example"),))
        if header(head, self.name) is not None:
            return Reply(
                403,
                Refusal.FORBIDDEN,
                headers=((b"x-denied-by", b"test"), (b"content-type", b"application/json")),
                body=b'{"denied":true}\n',
                detail={"rule": "deny-header"},
            )
        return CONTINUE

    def on_response_head(self, ctx: RequestContext, head: ResponseHead, resume: Resume) -> Verdict:
        if ctx.filter_state.get(id(self)):
            return Reply(403, Refusal.FORBIDDEN, headers=((b"x-denied-by", b"response"),))
        return CONTINUE


class ParkSpec(msgspec.Struct, forbid_unknown_fields=True):
    delay: float = 0.2


class ParkThenResume(Filter):
    """Waits `delay` seconds (a lookup) on requests with `x-park`, then lets them pass, or
    refuses them (429) when the header says `deny`; `x-hang` never resumes at all. Requests
    without those headers pass at once."""

    __slots__ = ("delay",)

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        if header(head, b"x-hang") is not None:
            return Stop()
        park = header(head, b"x-park")
        if park is None:
            return CONTINUE
        verdict: Verdict = CONTINUE
        if park == b"deny":
            verdict = Reply(429, Refusal.RATE_LIMITED, headers=((b"retry-after", b"1"),))
        asyncio.get_running_loop().call_later(self.delay, resume, verdict)
        return Stop()


class BodySpec(msgspec.Struct, forbid_unknown_fields=True):
    marker: str = "EVIL"


class RefuseMarkedBody(Filter):
    """Refuses (400, threat_json) a request body holding `marker`, even split over chunks
    (the end of the last chunk is kept in the exchange's filter state). With `x-body-park`,
    it waits a moment on every chunk before deciding (a body sent to a scanner); with
    `x-body-hang`, it never resumes."""

    __slots__ = ("marker",)
    inspects_request_body = True

    def __init__(self, marker: bytes) -> None:
        self.marker = marker

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        park: bool | None = header(head, b"x-body-park") is not None
        if header(head, b"x-body-hang") is not None:
            park = None  # never resumes
        ctx.filter_state[id(self)] = (b"", park)
        return CONTINUE

    def on_request_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        state = ctx.filter_state
        tail, park = state[id(self)]
        tail += chunk
        verdict: Verdict = CONTINUE
        if self.marker in tail:
            verdict = Reply(400, Refusal.THREAT_JSON, detail={"marker": self.marker.decode()})
        state[id(self)] = (tail[-len(self.marker) :], park)
        if park is None:
            return Stop()
        if not park:
            return verdict
        asyncio.get_running_loop().call_later(0.005, resume, verdict)
        return Stop()


class RecordSpec(msgspec.Struct, forbid_unknown_fields=True):
    pass


# What RecordBody saw, (chunk size, end) per call, for the in-process tests to read.
BODY_CALLS: list[tuple[int, bool]] = []


class RecordBody(Filter):
    """Lets every body pass, noting each `on_request_body` call in BODY_CALLS."""

    __slots__ = ()
    inspects_request_body = True

    def on_request_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        BODY_CALLS.append((len(chunk), end))
        return CONTINUE


class ResponseBodySpec(msgspec.Struct, forbid_unknown_fields=True):
    marker: str = "LEAK"


class RefuseMarkedResponse(Filter):
    """For requests with `x-response-limit: N`: holds the first N bytes of the response body
    and refuses (403, forbidden) a response whose body holds `marker` within them."""

    __slots__ = ("marker",)
    inspects_response_body = True

    def __init__(self, marker: bytes) -> None:
        self.marker = marker

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        limit = header(head, b"x-response-limit")
        if limit is not None:
            ctx.filter_state[id(self)] = [int(limit), b""]
        return CONTINUE

    def response_body_limit(self, ctx: RequestContext, head: ResponseHead) -> int:
        state = ctx.filter_state.get(id(self))
        return int(state[0]) if state is not None else 0

    def on_response_body(
        self, ctx: RequestContext, chunk: bytes, end: bool, resume: Resume
    ) -> Verdict:
        state = ctx.filter_state.get(id(self))
        if state is None:
            return CONTINUE
        limit, seen = state
        seen = state[1] = (seen + chunk)[:limit]
        if self.marker in seen:
            return Reply(403, Refusal.FORBIDDEN, detail={"marker": self.marker.decode()})
        return CONTINUE


class RaiseSpec(msgspec.Struct, forbid_unknown_fields=True):
    pass


class RaiseOnHeader(Filter):
    """A bug: raises on requests with `x-raise`."""

    __slots__ = ()

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        if header(head, b"x-raise") is not None:
            raise RuntimeError("a test filter that fails")
        return CONTINUE


TYPES = (
    FilterType("test_wire_deny", DenySpec, lambda spec: DenyOnHeader(spec.header.lower().encode())),
    FilterType("test_wire_park", ParkSpec, lambda spec: ParkThenResume(spec.delay)),
    FilterType("test_wire_body", BodySpec, lambda spec: RefuseMarkedBody(spec.marker.encode())),
    FilterType("test_wire_raise", RaiseSpec, lambda spec: RaiseOnHeader()),
    FilterType("test_wire_record", RecordSpec, lambda spec: RecordBody()),
    FilterType(
        "test_wire_response",
        ResponseBodySpec,
        lambda spec: RefuseMarkedResponse(spec.marker.encode()),
    ),
)


def register() -> None:
    for filter_type in TYPES:
        register_type(filter_type)


def unregister() -> None:
    for filter_type in TYPES:
        REGISTRY.pop(filter_type.name, None)
