"""`authenticate: - basic` in-process: argon2 checked in a thread while the request waits (the
event loop keeps running), a verified password remembered under an HMAC (never the password),
unknown users and wrong passwords refused alike, `must_change_password` refused as revoked."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import msgspec
import pytest
from argon2 import PasswordHasher

from outwork.filters import CONTINUE, Identity, PolicyEnv, Reply, Stop
from outwork.filters.auth_basic import BasicMethod
from outwork.filters.authenticate import AuthenticateFilter, AuthenticateSpec, build
from outwork.observe.refusals import Refusal
from tests.filters.fake import FakeContext, block_headers, request, run_head

HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)  # cheap: tests only
OPS = HASHER.hash("correct horse")
NEW = HASHER.hash("temporary")


def basic_filter(**options: Any) -> AuthenticateFilter:
    users = [
        {"name": "ops", "hash": OPS, "scopes": ["admin"]},
        {"name": "new", "hash": NEW, "must_change_password": True},
    ]
    spec = [{"basic": {"users": users, "realm": "ops area", **options}}]
    return build(msgspec.convert(spec, AuthenticateSpec, strict=True), PolicyEnv())


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def test_a_correct_password_is_accepted_and_not_forwarded() -> None:
    ctx = FakeContext()
    head = request(basic("ops", "correct horse"), ("Accept", "*/*"))
    assert run_head(basic_filter(), ctx, head) is CONTINUE
    assert ctx.identity == Identity("basic", "ops", frozenset({"admin"}))
    assert block_headers(head) == [("accept", "*/*"), ("x-authenticated-identity", "basic:ops")]


def test_the_check_runs_off_the_loop_which_keeps_serving() -> None:
    f = basic_filter()

    async def run() -> tuple[Any, int]:
        loop = asyncio.get_running_loop()
        resumed: asyncio.Future[Any] = loop.create_future()
        verdict = f.on_request_head(
            FakeContext(), request(basic("ops", "correct horse")), resumed.set_result
        )
        assert isinstance(verdict, Stop)
        ticks = 0
        while not resumed.done():  # the loop runs other work while argon2 runs in a thread
            ticks += 1
            await asyncio.sleep(0)
        return resumed.result(), ticks

    verdict, ticks = asyncio.run(run())
    assert verdict is CONTINUE and ticks > 0


def test_a_verified_password_is_remembered_without_the_password() -> None:
    f = basic_filter()
    method = f.methods[0]
    assert isinstance(method, BasicMethod)
    assert run_head(f, FakeContext(), request(basic("ops", "correct horse"))) is CONTINUE
    assert len(method.verified) == 1
    assert all(b"correct horse" not in tag for tag in method.verified)
    # Now answered at once, without a thread.
    calls: list[Any] = []
    verdict = f.on_request_head(FakeContext(), request(basic("ops", "correct horse")), calls.append)
    assert verdict is CONTINUE and not calls

    # But not past its time-to-live (30s by default): then argon2 runs again.
    async def later() -> Any:
        ctx = FakeContext(now=FakeContext().now + 31)
        return f.on_request_head(ctx, request(basic("ops", "correct horse")), lambda v: None)

    assert isinstance(asyncio.run(later()), Stop)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (basic("ops", "wrong"), "wrong password"),
        (basic("nobody", "correct horse"), "unknown user"),
        (("Authorization", "Basic !!!"), "malformed Basic credentials"),
        (
            ("Authorization", "Basic " + base64.b64encode(b"nocolon").decode()),
            "malformed Basic credentials",
        ),
    ],
)
def test_refused(header: tuple[str, str], reason: str) -> None:
    reply = run_head(basic_filter(), FakeContext(), request(header))
    assert isinstance(reply, Reply)
    assert (reply.status, reply.refusal) == (401, Refusal.UNAUTHENTICATED)
    assert reply.headers == ((b"www-authenticate", b'Basic realm="ops area", charset="UTF-8"'),)
    assert reply.detail["reason"] == reason and reply.detail["method"] == "basic"
    assert "correct horse" not in repr(reply) and header[1] not in repr(reply)


def test_must_change_password_is_refused_as_revoked_after_a_correct_password() -> None:
    reply = run_head(basic_filter(), FakeContext(), request(basic("new", "temporary")))
    assert isinstance(reply, Reply)
    assert (reply.status, reply.refusal) == (401, Refusal.CREDENTIAL_REVOKED)
    assert reply.detail == {"reason": "must change password", "user": "new", "method": "basic"}
    wrong = run_head(basic_filter(), FakeContext(), request(basic("new", "guess")))
    assert isinstance(wrong, Reply) and wrong.refusal is Refusal.UNAUTHENTICATED


def test_checks_beyond_the_queue_cap_are_refused_at_once() -> None:
    from outwork.filters.auth_basic import MAX_PENDING

    f = basic_filter()
    method = f.methods[0]
    assert isinstance(method, BasicMethod)
    method.pending = MAX_PENDING  # as if 64 checks were queued or running
    reply = f.on_request_head(FakeContext(), request(basic("ops", "x")), lambda v: None)
    assert isinstance(reply, Reply) and reply.status == 401
    assert reply.detail["reason"] == "too many password checks in progress"
