"""Upstream pools as a client sees them: balancing, health, ejection, retries, circuit breaker,
timeouts, with real backend processes on loopback (demo/backend.py and faulty_backend.py)."""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import BACKEND, Gateway, gateway_config
from tests.e2e.pki import TestPKI
from tests.proxy.test_upstream_tls import TlsBackend, make_tls_backend, pki  # noqa: F401

FAULTY = Path(__file__).with_name("faulty_backend.py")
WAIT = 30.0  # seconds before a wait for the gateway's log is declared failed


class Process:
    """A backend process that prints `listening on HOST:PORT`; its later stdout lines are
    queued for the test (`held` from the gate backend)."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        assert match, f"backend did not start: {line!r}"
        self.address = match.group(1)
        self.port = int(self.address.rpartition(":")[2])
        self.url = f"http://{self.address}"
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def next_line(self) -> str:
        return self.lines.get(timeout=WAIT)

    def release(self) -> None:
        """The gate backend answers what it holds, and everything after."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def make(*args: str) -> Process:
        process = Process(list(args))
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


def demo(spawn: Callable[..., Process], name: str, port: int = 0) -> Process:
    return spawn(str(BACKEND), "--port", str(port), "--name", name)


def faulty(spawn: Callable[..., Process], mode: str, name: str = "faulty") -> Process:
    return spawn(str(FAULTY), mode, "--name", name)


def free_port() -> int:
    """A port nothing listens on (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(targets: list[str], **upstream: Any) -> dict[str, Any]:
    config = gateway_config(targets[0])
    config["upstreams"]["backend"] = {"targets": targets, **upstream}
    return config


def request(
    url: str,
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, str, bytes]:
    """(status, x-backend, body), each request on a new connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, response.getheader("x-backend", ""), data
    finally:
        conn.close()


def in_background(url: str, path: str = "/") -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(request(url, path)), daemon=True)
    thread.start()
    return thread, result


def wait_for_log(gw: Gateway, pattern: str) -> None:
    deadline = time.monotonic() + WAIT
    while not re.search(pattern, gw.stderr()):
        assert time.monotonic() < deadline, f"no {pattern!r} in:\n{gw.stderr()}"
        time.sleep(0.05)


def upstream_errors(gw: Gateway) -> Counter[str]:
    assert gw.admin_url is not None
    text = request(gw.admin_url, "/metrics")[2].decode()
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("outwork_upstream_errors_total{"):
            kind = re.search(r'kind="([^"]+)"', line)
            assert kind is not None
            found[kind.group(1)] += int(float(line.rsplit(" ", 1)[1]))
    return found


def healthy_gauge(gw: Gateway) -> dict[str, int]:
    """outwork_upstream_healthy by target, for the upstream `backend`."""
    assert gw.admin_url is not None
    text = request(gw.admin_url, "/metrics")[2].decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("outwork_upstream_healthy{") and 'upstream="backend"' in line:
            target = re.search(r'target="([^"]+)"', line)
            assert target is not None
            found[target.group(1)] = int(float(line.rsplit(" ", 1)[1]))
    return found


def test_round_robin_spreads_evenly(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    backends = [demo(spawn, name) for name in ("a", "b", "c")]
    gw = make_gateway(config_for([b.url for b in backends]))
    seen = Counter(request(gw.url)[1] for _ in range(30))
    assert seen == {"a": 10, "b": 10, "c": 10}


def test_least_connections_prefers_the_idle_target(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    gate = faulty(spawn, "gate", "busy")
    idle = demo(spawn, "idle")
    gw = make_gateway(config_for([gate.url, idle.url], load_balancing="least_connections"))
    # Both idle: the tie goes to the first target, which holds the request.
    thread, slow = in_background(gw.url)
    assert gate.next_line() == "held"
    # With round robin every other request would wait at the busy target.
    assert [request(gw.url)[:2] for _ in range(10)] == [(200, "idle")] * 10
    gate.release()
    thread.join(WAIT)
    assert slow[0][:2] == (200, "busy")


def users_by_backend(gw: Gateway, users: list[str]) -> dict[str, str]:
    result = {}
    for user in users:
        status, backend, _ = request(gw.url, headers={"X-User": user})
        assert status == 200
        result[user] = backend
    return result


def test_consistent_hash_keeps_keys_and_moves_only_a_removed_targets_share(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    a, b, c = (demo(spawn, name) for name in ("a", "b", "c"))
    users = [f"user-{i}" for i in range(60)]
    hashed = {"load_balancing": "consistent_hash", "hash_on": "header:X-User"}
    three = make_gateway(config_for([a.url, b.url, c.url], **hashed), name="three.yaml")
    before = users_by_backend(three, users)
    assert users_by_backend(three, users) == before  # the same user, the same backend
    assert set(before.values()) == {"a", "b", "c"}

    two = make_gateway(config_for([a.url, b.url], **hashed), name="two.yaml")
    after = users_by_backend(two, users)
    moved = {user for user in users if after[user] != before[user]}
    assert moved == {user for user in users if before[user] == "c"}

    # Out of rotation is the same as removed: c's keys walk on along the ring to where the
    # two-target ring puts them (the first request for each is retried there, not failed).
    c.stop()
    three_config = config_for([a.url, b.url, c.url], **hashed)
    three_config["upstreams"]["backend"]["passive_health"] = {"consecutive_failures": 1}
    ejecting = make_gateway(three_config, name="ejecting.yaml")
    assert users_by_backend(ejecting, users) == after
    assert f"target {c.address}: out of rotation" in ejecting.stderr()


def test_consistent_hash_on_the_client_address_by_default(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    backends = [demo(spawn, name) for name in ("a", "b", "c")]
    gw = make_gateway(config_for([b.url for b in backends], load_balancing="consistent_hash"))
    seen = Counter(request(gw.url)[1] for _ in range(12))
    assert len(seen) == 1 and sum(seen.values()) == 12


def test_active_checks_take_a_dead_target_out_and_bring_it_back(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    a = demo(spawn, "a")
    b = demo(spawn, "b")
    check = {"path": "/healthz", "interval": 0.2, "unhealthy_threshold": 2, "healthy_threshold": 2}
    gw = make_gateway(config_for([a.url, b.url], health_check=check, retries=0))
    assert Counter(request(gw.url)[1] for _ in range(4)) == {"a": 2, "b": 2}

    b.stop()
    wait_for_log(gw, rf"target {b.address}: unhealthy \(2 checks failed in a row, last: ")
    wait_for_log(gw, rf"target {b.address}: out of rotation")
    # Every request goes to a: none is sent to the dead target (retries are off here).
    assert [request(gw.url)[:2] for _ in range(6)] == [(200, "a")] * 6
    assert healthy_gauge(gw) == {a.address: 1, b.address: 0}

    demo(spawn, "b", b.port)
    wait_for_log(gw, rf"target {b.address}: back in rotation")
    assert healthy_gauge(gw) == {a.address: 1, b.address: 1}
    assert Counter(request(gw.url)[1] for _ in range(4)) == {"a": 2, "b": 2}


def test_503_when_no_target_is_healthy(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    a, b = free_port(), free_port()
    check = {"interval": 0.2, "unhealthy_threshold": 1}
    gw = make_gateway(
        config_for([f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"], health_check=check)
    )
    wait_for_log(gw, rf"target 127.0.0.1:{a}: out of rotation")
    wait_for_log(gw, rf"target 127.0.0.1:{b}: out of rotation")
    status, _, body = request(gw.url)
    assert status == 503 and b"Traceback" not in body
    assert upstream_errors(gw)["no_healthy_target"] == 1


def test_passive_ejection_after_consecutive_failures(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    a = demo(spawn, "a")
    dead = free_port()
    passive = {"consecutive_failures": 2, "ejection_time": "1h"}
    gw = make_gateway(
        config_for([a.url, f"http://127.0.0.1:{dead}"], passive_health=passive, retries=0)
    )
    statuses = [request(gw.url)[0] for _ in range(10)]
    # Round robin: every other request reaches the dead target until its second failure.
    assert statuses == [200, 502, 200, 502] + [200] * 6
    assert f"target 127.0.0.1:{dead}: ejected for 3600s after 2 failed requests" in gw.stderr()
    assert upstream_errors(gw)["connect"] == 2


def test_an_ejected_target_is_tried_again_after_ejection_time(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    a = demo(spawn, "a")
    port = free_port()
    passive = {"consecutive_failures": 1, "ejection_time": 1}
    gw = make_gateway(config_for([a.url, f"http://127.0.0.1:{port}"], passive_health=passive))
    # The dead target fails once and leaves; the request is retried on a (a GET).
    assert [request(gw.url)[:2] for _ in range(2)] == [(200, "a")] * 2
    wait_for_log(gw, rf"target 127.0.0.1:{port}: out of rotation")
    demo(spawn, "b", port)
    wait_for_log(gw, rf"target 127.0.0.1:{port}: back in rotation")
    deadline = time.monotonic() + WAIT
    while request(gw.url)[1] != "b":
        assert time.monotonic() < deadline


def test_get_and_put_are_retried_on_another_target_post_is_not(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    resetting = faulty(spawn, "reset")
    a = demo(spawn, "a")
    gw = make_gateway(config_for([resetting.url, a.url]))
    # Round robin comes back to the resetting target first for every request.
    assert [request(gw.url)[:2] for _ in range(4)] == [(200, "a")] * 4
    # The body is sent again, whole (PUT is idempotent).
    status, backend, body = request(gw.url, "/echo", "PUT", body=b"replayed body")
    assert (status, backend, body) == (200, "a", b"replayed body")
    status, _, body = request(gw.url, "/echo", "POST", body=b"sent once")
    assert status == 502 and b"Traceback" not in body
    assert upstream_errors(gw)["reset"] == 6
    assert "Traceback" not in gw.stderr()


def test_no_retry_once_the_only_other_target_failed_too(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    resetting = [faulty(spawn, "reset") for _ in range(3)]
    gw = make_gateway(config_for([r.url for r in resetting], retries=5))
    assert request(gw.url)[0] == 502
    assert upstream_errors(gw)["reset"] == 3  # each target once, then the client is answered


def test_circuit_breaker_answers_503_beyond_max_connections_and_max_pending(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    gate = faulty(spawn, "gate", "gate")
    gw = make_gateway(config_for([gate.url], max_connections=1, max_pending=1, connect_timeout=120))
    first, first_result = in_background(gw.url)
    assert gate.next_line() == "held"  # the only connection is busy
    done: queue.Queue[int] = queue.Queue()
    threads = [
        threading.Thread(target=lambda: done.put(request(gw.url)[0]), daemon=True) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    # One of the two waits in the queue; the other finds it full and is answered at once.
    assert done.get(timeout=WAIT) == 503
    gate.release()
    assert done.get(timeout=WAIT) == 200  # the queued one, on the connection freed
    first.join(WAIT)
    assert first_result[0][0] == 200
    assert upstream_errors(gw)["circuit_breaker"] == 1


def test_504_on_a_backend_that_hangs(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    hanging = faulty(spawn, "hang")
    gw = make_gateway(config_for([hanging.url], read_timeout=0.5))
    status, _, body = request(gw.url)
    assert status == 504 and b"Traceback" not in body
    assert upstream_errors(gw)["timeout"] == 1


def test_502_on_a_backend_that_sends_garbage(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    garbage = faulty(spawn, "garbage")
    gw = make_gateway(config_for([garbage.url]))
    status, _, body = request(gw.url)
    assert status == 502 and b"Traceback" not in body
    assert upstream_errors(gw)["protocol"] == 1  # the request reached it: not retried
    assert "Traceback" not in gw.stderr()


def test_504_when_the_backend_does_not_read_the_request_body(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    """The write timeout: request bytes that the upstream leaves unread."""
    deaf = faulty(spawn, "noread")
    size = 256 * 1024 * 1024
    config = config_for([deaf.url], write_timeout=1, read_timeout=3600)
    config["limits"] = {"max_request_body": size, "idle_timeout": 3600}
    gw = make_gateway(config)
    parts = urlsplit(gw.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)

        def upload() -> None:
            block = b"x" * 65536
            try:
                for _ in range(size // len(block)):
                    sock.sendall(block)
            except OSError:
                pass  # the gateway answered and closed, or the test did

        threading.Thread(target=upload, daemon=True).start()
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 504 "), response
    assert upstream_errors(gw)["write_timeout"] == 1


def backend_requests(backend: Process) -> int:
    """Requests the demo backend served, this question included."""
    return int(json.loads(request(backend.url, "/stats")[2])["requests"])


def test_reload_stops_the_old_configs_health_checks(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    backend = demo(spawn, "a")
    config = config_for([backend.url], health_check={"path": "/hc", "interval": 0.1})
    gw = make_gateway(config)
    deadline = time.monotonic() + WAIT
    while backend_requests(backend) < 5:  # the checks run
        assert time.monotonic() < deadline
        time.sleep(0.05)
    del config["upstreams"]["backend"]["health_check"]
    gw.config_file.write_text(yaml.safe_dump(config))
    gw.proc.send_signal(signal.SIGHUP)
    wait_for_log(gw, "outwork: reloaded")
    before = backend_requests(backend)
    time.sleep(1)  # ten check intervals: a check task left running would show here
    assert backend_requests(backend) == before + 1  # only the second question


def test_a_check_answered_with_an_unexpected_status_fails(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    backend = demo(spawn, "a")
    check = {"path": "/status?code=503", "interval": 0.2, "unhealthy_threshold": 1}
    gw = make_gateway(config_for([backend.url], health_check=check))
    wait_for_log(
        gw, rf"target {backend.address}: unhealthy \(1 checks failed in a row, last: status 503\)"
    )
    assert request(gw.url)[0] == 503


def test_a_queued_request_waits_at_most_connect_timeout(
    spawn: Callable[..., Process], make_gateway: Callable[..., Gateway]
) -> None:
    gate = faulty(spawn, "gate", "gate")
    gw = make_gateway(config_for([gate.url], max_connections=1, max_pending=5, connect_timeout=1))
    first, first_result = in_background(gw.url)
    assert gate.next_line() == "held"
    assert request(gw.url)[0] == 503  # queued, then given up on
    assert upstream_errors(gw)["queue_timeout"] == 1
    gate.release()
    first.join(WAIT)
    assert first_result[0][0] == 200


def test_health_checks_speak_tls_to_https_targets(
    make_tls_backend: Callable[..., TlsBackend],  # noqa: F811 (the fixture imported above)
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,  # noqa: F811
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key)
    live, dead = f"localhost:{backend.port}", f"localhost:{free_port()}"
    check = {"path": "/hc", "interval": 0.2, "unhealthy_threshold": 1}
    config = config_for(
        [f"https://{live}", f"https://{dead}"],
        tls={"ca": str(pki.ca_cert)},
        health_check=check,
        max_idle_connections=0,  # every request on a new connection: the backend counts them
    )
    gw = make_gateway(config)
    wait_for_log(gw, rf"target {dead}: out of rotation")

    def connections() -> int:
        """The backend's number for this request's connection (one per TLS connection)."""
        return int(json.loads(request(gw.url, "/x")[2])["conn"])

    # Wait for two checks on the live target, seen as connections no request made.
    first, requests = connections(), 0
    deadline = time.monotonic() + WAIT
    while connections() - first - (requests := requests + 1) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # One failed check would have taken it out (unhealthy_threshold: 1).
    assert healthy_gauge(gw) == {live: 1, dead: 0}
    assert f"target {live}: unhealthy" not in gw.stderr()
