"""The policy pipeline's cost in process (not a pass/fail test):

    .venv/bin/python bench/policy_inproc.py [--requests N] [--profile STEP] [--steps ...]

The gateway state runs in this process's loop over plain HTTP (no TLS: its cost is the same
with and without a policy), the client on the in-process harness's fake transport
(tests/inproc.py), the backend an asyncio Protocol on loopback answering 1 KiB. For each
configuration, N keep-alive 1 KiB JSON POSTs (the bench's POLICY_SCRIPT request) go one after
the other on one connection; the figure is the process's CPU per request, best of `--repeat`
runs, for the whole loop (client and backend included: the same for every configuration, so
the differences are the gateway's).

Configurations: `get` (no policy, a GET as wrk sends it: the plain keep-alive path), `none`
(no policy, the POST), `typical` (bench/servers.py TYPICAL_POLICY), and each step of it alone
(`headers`, `authenticate`, `rate_limit`, `threat_protection`): a step alone minus `none` is
what that step costs inside the pipeline; `noop`: four steps whose every hook (the request
body's too) continues at once, what the pipeline itself costs. `--profile NAME` prints a
cProfile of one configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import API_KEY, POLICY_BODY, TYPICAL_POLICY  # noqa: E402

from outwork.filters import (  # noqa: E402
    Filter,
    FilterType,
    register,
)
from outwork.proxy.server import GatewayState  # noqa: E402

try:
    from outwork.config.load import load_config
    from outwork.front.h1 import ClientProtocol
except ImportError:  # the layout before issue 9's (to compare the GET path with older commits)
    from outwork.policy.load import load_config  # type: ignore[no-redef, import-not-found]
    from outwork.proxy.connection import ClientProtocol  # type: ignore[no-redef, import-not-found]


class NoopSpec(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Noop(Filter):
    """Every hook continues at once (Filter's own hooks): a chain of these costs only the
    pipeline's own work, as each says it acts at every hook."""

    __slots__ = ()
    inspects_request_body = True

    def implements(self, hook: str) -> bool:
        return True


register(FilterType("bench_noop", NoopSpec, lambda spec: Noop()))
NOOPS = 4  # the `noop` configuration: as many no-op steps as the typical policy has

STEPS = ("headers", "authenticate", "rate_limit", "threat_protection")
ANSWER = b"x" * 1024
BACKEND_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
)
GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # what wrk sends
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *([0-9]+)")


def request(body: bytes) -> bytes:
    head = (
        "POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Backend(asyncio.Protocol):
    """Answers every request (head and Content-Length body) with 1 KiB."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _LENGTH.search(buffer, 0, end + 2)
            size = end + 4 + (int(match.group(1)) if match else 0)
            if len(buffer) < size:
                return
            del buffer[:size]
            assert self.transport is not None
            self.transport.write(BACKEND_RESPONSE)


class Driver(asyncio.Transport):
    """The client's side of the gateway's connection: one request at a time; the next goes in
    a later loop turn once the whole answer is written."""

    def __init__(self, message: bytes, count: int, done: asyncio.Future[None]) -> None:
        super().__init__()
        self.message = message
        self.left = count
        self.done = done
        self.statuses: dict[bytes, int] = {}
        self.written = bytearray()
        self.protocol: asyncio.Protocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", 40000)
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        written = self.written
        written += data
        end = written.find(b"\r\n\r\n")
        if end < 0:
            return
        match = _LENGTH.search(written, 0, end + 2)
        size = end + 4 + (int(match.group(1)) if match else 0)
        if len(written) < size:
            return
        status = bytes(written[9:12])
        self.statuses[status] = self.statuses.get(status, 0) + 1
        del written[:size]
        self.left -= 1
        if self.left <= 0:
            if not self.done.done():
                self.done.set_result(None)
            return
        asyncio.get_running_loop().call_soon(self.send)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def send(self) -> None:
        assert self.protocol is not None
        self.protocol.data_received(self.message)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass  # one request at a time: nothing more comes meanwhile

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def config(backend: str, steps: tuple[str, ...]) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
        "upstreams": {"backend": {"targets": [backend]}},
        "limits": {"max_requests_per_connection": 10_000_000},
    }
    if steps == ("noop",):
        conf["policies"] = {f"noop{i}": {"bench_noop": {}} for i in range(NOOPS)}
        conf["default_policies"] = list(conf["policies"])
    elif steps:
        typical = yaml.safe_load(TYPICAL_POLICY)["policies"]["typical"]
        conf["policies"] = {"p": {step: typical[step] for step in steps}}
        conf["default_policies"] = ["p"]
    return conf


async def measure(
    workdir: Path,
    steps: tuple[str, ...],
    count: int,
    profile: cProfile.Profile | None,
    get: bool = False,
) -> tuple[float, dict[bytes, int]]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Backend, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = workdir / "policy_inproc.yaml"
    path.write_text(yaml.safe_dump(config(f"http://127.0.0.1:{port}", steps)))
    state = GatewayState(load_config(path), loop)
    try:
        message = GET if get else request(POLICY_BODY.encode())
        protocol = ClientProtocol(state, state.config.listeners[0])
        warm: asyncio.Future[None] = loop.create_future()
        driver = Driver(message, 200, warm)
        protocol.connection_made(driver)
        driver.protocol = protocol
        driver.send()
        await warm  # the upstream connection is open and pooled; tables are built
        done: asyncio.Future[None] = loop.create_future()
        driver.done, driver.left, driver.statuses = done, count, {}
        gc.collect()
        started = time.process_time()
        if profile is not None:
            profile.enable()
        driver.send()
        await done
        if profile is not None:
            profile.disable()
        spent = time.process_time() - started
        protocol.connection_lost(None)
        return spent / count * 1e6, driver.statuses
    finally:
        for pool in state.pools.values():
            pool.close()
        state.security_log.close()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", default="none,typical," + ",".join(STEPS))
    parser.add_argument("--profile", help="a configuration to profile (cProfile) instead")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    def steps_of(name: str) -> tuple[str, ...]:
        return () if name in ("none", "get") else STEPS if name == "typical" else (name,)

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if args.profile:
            profile = cProfile.Profile()
            us, statuses = asyncio.run(
                measure(
                    workdir, steps_of(args.profile), args.requests, profile, args.profile == "get"
                )
            )
            print(f"{args.profile}: {us:.1f} µs/request under cProfile, statuses {statuses}")
            pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)
            return
        names = args.steps.split(",")
        results: dict[str, float] = {}
        for _ in range(args.repeat):  # the configurations in turn, each round: noise hits all
            for name in names:
                us = asyncio.run(
                    measure(workdir, steps_of(name), args.requests, None, name == "get")
                )[0]
                results[name] = min(us, results.get(name, us))
        for name in names:
            extra = f"  (+{results[name] - results['none']:.1f})" if "none" in results else ""
            print(f"{name:>18}: {results[name]:6.1f} µs/request{extra}")
        if "none" in results and "typical" in results:
            print(f"typical / none: {results['typical'] / results['none']:.2f}")


if __name__ == "__main__":
    main()
