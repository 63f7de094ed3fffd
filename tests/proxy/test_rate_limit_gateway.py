"""`rate_limit` through running gateways with real clients: the local limit over HTTP/1.1 and
HTTP/2 (burst admitted, then 429 with Retry-After and the RateLimit fields, counted and
evented), shared by `workers: 2`; Redis limits shared by two gateways (standalone and a
3-master cluster) admitting what the limit says over 10 seconds; a Redis stopped mid-test
following `on_store_error`; and 429s, which ban their sender only when `ban.weights` says so."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Backend, Gateway, metric_sum, require_tool
from tests.proxy import test_listener_tls
from tests.proxy.test_listener_tls import Pki, port_of, tls_config
from tests.proxy.test_reload import _wait_for
from tests.proxy.test_workers import wait_for, worker_pids
from tests.redis_servers import RedisServer, redis_cluster, redis_server

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared
REFUSED = "outwork_requests_refused_total"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _config(backend: Backend, pki: Pki, tmp_path: Path, *limits: dict[str, Any]) -> dict[str, Any]:
    config = tls_config(backend, pki, tmp_path)
    config["routes"] = [{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["p"]}]
    config["policies"] = {"p": {"rate_limit": list(limits)}}
    return config


class Client:
    """HTTP/1.1 over TLS on one keep-alive connection (a new one when the gateway closes)."""

    def __init__(self, gw: Gateway, ca: Path, source: str = "127.0.0.1") -> None:
        self.port = port_of(gw)
        self.context = ssl.create_default_context(cafile=str(ca))
        self.source = source
        self.conn: http.client.HTTPSConnection | None = None

    def get(self, path: str = "/x", tenant: str = "t1") -> http.client.HTTPResponse:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    "localhost",
                    self.port,
                    context=self.context,
                    timeout=30,
                    source_address=(self.source, 0),
                )
            try:
                self.conn.request("GET", path, headers={"X-Tenant": tenant})
                response = self.conn.getresponse()
                response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return response
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _events(gw: Gateway, event: str) -> list[dict[str, Any]]:
    path = gw.config_file.parent / "events.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["event"] == event]


def _h2_heads(gw: Gateway, pki: Pki, count: int) -> list[str]:
    """`count` requests on one HTTP/2 connection (curl): their response heads."""
    port = port_of(gw)
    urls = [f"https://localhost:{port}/h2/{i}" for i in range(count)]
    got = subprocess.run(
        [require_tool("curl"), "-sS", "--http2", "--cacert", str(pki.ca)]
        + ["--resolve", f"localhost:{port}:127.0.0.1", "-D", "-", *urls],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    return re.findall(r"^HTTP/2 .*?\n\n", got.stdout, re.M | re.S)


def _status(head: str) -> int:
    return int(head.split()[1])


def test_a_local_limit_over_http1_and_http2(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    limit = {"key": "client_address", "rate": "1/h", "burst": 5, "response_headers": True}
    gw = make_gateway(_config(make_backend(), pki, tmp_path, limit))
    client = Client(gw, pki.ca)
    responses = [client.get() for _ in range(7)]
    assert [r.status for r in responses] == [200] * 5 + [429] * 2
    assert responses[0].getheader("ratelimit-limit") == "5"
    assert responses[0].getheader("ratelimit-remaining") == "4"
    refused = responses[5]
    assert refused.getheader("retry-after") == "3600"  # one more an hour after the burst
    assert refused.getheader("ratelimit-limit") == "5"
    assert refused.getheader("ratelimit-remaining") == "0"
    assert int(refused.getheader("ratelimit-reset") or 0) > 0
    # HTTP/2 from the same address shares the budget: all refused, with the same fields.
    heads = _h2_heads(gw, pki, 3)
    assert [h.splitlines()[0].strip() for h in heads] == ["HTTP/2 429"] * 3
    assert all("\nretry-after: 3600\n" in h and "\nratelimit-limit: 5\n" in h for h in heads)
    assert gw.metric(REFUSED, reason="rate_limited") == 5
    events = _events(gw, "policy.rate_limited")
    assert len(events) == 5 and events[0]["detail"]["key"] == "client_address"


def test_workers_share_the_local_limit(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    limit = {"key": "client_address", "rate": "1/h", "burst": 10}
    config = _config(make_backend(), pki, tmp_path, limit)
    config["workers"] = 2
    gw = make_gateway(config)
    statuses = []
    for _ in range(30):  # a connection each: SO_REUSEPORT spreads them over both workers
        client = Client(gw, pki.ca)
        statuses.append(client.get().status)
        client.close()
    assert statuses.count(200) == 10 and statuses.count(429) == 20


def _hammer(gateways: list[Gateway], ca: Path, seconds: float) -> tuple[int, float]:
    """Requests of tenant t1 as fast as one client per gateway can send for `seconds`: the
    admitted count, and the time from the first answer to the last (the limit counts from the
    first request it sees). Each client first warms its gateway's Redis connection up with
    another tenant's request, so that connecting is not counted as time."""
    admitted = [0] * len(gateways)
    first: list[float] = []
    last: list[float] = []

    def run(index: int) -> None:
        client = Client(gateways[index], ca)
        assert client.get(tenant="warm-up").status == 200
        start = time.monotonic()
        answered: float | None = None
        while time.monotonic() - start < seconds:
            if client.get().status == 200:
                admitted[index] += 1
            if answered is None:
                answered = time.monotonic()
                first.append(answered)
        last.append(time.monotonic())
        client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(gateways))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(admitted), max(last) - min(first)


def _two_gateways_share(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path, redis: dict[str, Any]
) -> None:
    backend = make_backend()
    limit = {"key": "header:X-Tenant", "rate": "10/s", "burst": 10, "store": "redis"}
    gateways = []
    for name in ("a", "b"):
        config = _config(backend, pki, tmp_path / name, limit)
        config["redis"] = {**redis, "timeout": 2.0}  # generous: the machine is shared
        (tmp_path / name).mkdir()
        gateways.append(make_gateway(config, name=f"{name}/outwork.yaml"))
    admitted, elapsed = _hammer(gateways, pki.ca, 10.0)
    configured = 10 + 10 * elapsed  # the burst, then the rate, over the time it ran
    print(f"admitted {admitted} of {configured:.1f} configured over {elapsed:.2f} s")
    assert abs(admitted - configured) <= 0.05 * configured, (admitted, configured)


def test_two_gateways_share_a_standalone_redis_limit(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path, redis: RedisServer
) -> None:
    _two_gateways_share(make_backend, make_gateway, pki, tmp_path, {"url": redis.url})


def test_two_gateways_share_a_cluster_redis_limit(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    with redis_cluster(tmp_path / "cluster") as nodes:
        seeds = [n.address for n in nodes]
        _two_gateways_share(make_backend, make_gateway, pki, tmp_path, {"cluster": seeds})


@pytest.mark.parametrize(("policy", "status"), [("allow", 200), ("deny", 503)])
def test_a_redis_stopped_mid_test_follows_on_store_error(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path, policy: str, status: int
) -> None:
    with redis_server(tmp_path / "redis") as server:
        # 100 an hour: a key lives 36 s per request, long enough to be seen in Redis.
        limit = {"key": "client_address", "rate": "100/h", "store": "redis"}
        config = _config(make_backend(), pki, tmp_path, {**limit, "on_store_error": policy})
        config["redis"] = {"url": server.url, "timeout": 2.0}
        gw = make_gateway(config)
        client = Client(gw, pki.ca)
        assert client.get().status == 200
        # HTTP/2 streams wait for Redis too (two on one connection).
        assert [_status(h) for h in _h2_heads(gw, pki, 2)] == [200, 200]
        server.stop()
        assert [client.get().status for _ in range(5)] == [status] * 5
        assert [_status(h) for h in _h2_heads(gw, pki, 2)] == [status] * 2
        assert gw.metric(REFUSED, reason="rate_limit_store") == (7 if policy == "deny" else 0)
        assert len(_events(gw, "rate_limit.store_error")) == 7
        assert server.start()  # back: the limit counts again (after the store's backoff)
        for _ in range(100):
            if client.get().status == 200 and redis_keys(server):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the gateway did not count in Redis again")


def redis_keys(server: RedisServer) -> list[str]:
    return server.command("KEYS", "outwork:rl:*").split()


def test_429s_alone_do_not_get_their_sender_banned(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    config = _config(make_backend(), pki, tmp_path, {"key": "client_address", "rate": "1/h"})
    config["ban"] = {"after": {"count": 3, "within": "60s"}}
    gw = make_gateway(config)
    client = Client(gw, pki.ca, source="127.0.0.2")
    assert [client.get().status for _ in range(10)] == [200] + [429] * 9
    client.close()
    assert Client(gw, pki.ca, source="127.0.0.2").get().status == 429  # answered, not cut
    assert metric_sum(gw.scrape(), REFUSED, reason="banned") == 0
    assert len(_events(gw, "policy.rate_limited")) == 9 + 1
    assert _events(gw, "ban.added") == []


def test_429s_get_their_sender_banned_when_weighed(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    config = _config(make_backend(), pki, tmp_path, {"key": "client_address", "rate": "1/h"})
    config["ban"] = {"after": {"count": 3, "within": "60s"}, "weights": {"policy.rate_limited": 1}}
    gw = make_gateway(config)
    client = Client(gw, pki.ca, source="127.0.0.2")
    assert [client.get().status for _ in range(4)] == [200, 429, 429, 429]
    client.close()
    with pytest.raises((ConnectionError, ssl.SSLError)):
        Client(gw, pki.ca, source="127.0.0.2").get()
    assert metric_sum(gw.scrape(), REFUSED, reason="banned") >= 1
    local = Client(gw, pki.ca)  # 127.0.0.1: its own budget, limited but never banned
    assert [local.get().status for _ in range(5)] == [200] + [429] * 4
    local.close()
    assert Client(gw, pki.ca).get().status == 429


@pytest.mark.parametrize("workers", [1, 2])
def test_local_counts_survive_a_reload(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path, workers: int
) -> None:
    limit = {"key": "client_address", "rate": "1/h", "burst": 3}
    config = _config(make_backend(), pki, tmp_path, limit)
    config["workers"] = workers
    gw = make_gateway(config)
    client = Client(gw, pki.ca)
    assert [client.get().status for _ in range(3)] == [200] * 3
    client.close()
    gw.proc.send_signal(signal.SIGHUP)
    _wait_for(gw, "outwork: reloaded")
    assert Client(gw, pki.ca).get().status == 429  # the new workers (or state) kept the count


def test_local_counts_survive_replaced_workers(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    limit = {"key": "client_address", "rate": "1/h", "burst": 3}
    config = _config(make_backend(), pki, tmp_path, limit)
    config["workers"] = 2
    gw = make_gateway(config)
    wait_for(lambda: len(worker_pids(gw)) == 2)
    statuses = []
    for _ in range(3):
        client = Client(gw, pki.ca)
        statuses.append(client.get().status)
        client.close()
    assert statuses == [200] * 3
    before = worker_pids(gw)
    for pid in before:  # every worker dies: only the supervisor's table is left
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(worker_pids(gw)) == 2 and not worker_pids(gw) & before)
    statuses = []
    deadline = time.monotonic() + 10
    while len(statuses) < 6:  # (a replacement may not listen yet: refused, tried again)
        client = Client(gw, pki.ca)
        try:
            statuses.append(client.get().status)
        except (ConnectionError, ssl.SSLError):
            assert time.monotonic() < deadline, "the replaced workers do not answer"
            time.sleep(0.1)
        finally:
            client.close()
    assert statuses == [429] * 6  # the new workers count where the dead ones left off
