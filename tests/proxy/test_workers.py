"""`workers: N`: a supervisor, N real worker processes on one port, replacement, graceful stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Backend, Gateway, gateway_config
from tests.proxy.test_gateway import curl


def worker_pids(gateway: Gateway) -> set[int]:
    """The gateway's live worker processes (its children)."""
    result = subprocess.run(
        ["ps", "--ppid", str(gateway.proc.pid), "-o", "pid="], capture_output=True, text=True
    )
    return {int(pid) for pid in result.stdout.split()}


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def served_ok(url: str) -> bool:
    result = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", url, timeout=5)
    return result.stdout == b"200"


def test_workers_share_the_port_and_a_dead_worker_is_replaced(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway({**gateway_config(backend.url), "workers": 3})
    wait_for(lambda: len(worker_pids(gw)) == 3)
    before = worker_pids(gw)
    # Every worker serves the listener, on its slot's socket (SO_REUSEPORT): one line per worker.
    bound = re.findall(r"worker \d \(pid (\d+)\): listener public on (\S+)", gw.stderr())
    assert {int(pid) for pid, _ in bound} == before
    assert {url for _, url in bound} == {gw.url}

    victim = sorted(before)[1]
    failures = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal failures
        while not stop.is_set():
            if not served_ok(gw.url + "/"):
                failures += 1

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(gw)) == 3 and victim not in worker_pids(gw))
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    after = worker_pids(gw)
    assert victim not in after and len(after - before) == 1
    assert f"(pid {victim}) killed by signal 9" in gw.stderr()
    # A connection the killed worker had accepted is lost with it (that is what SIGKILL does);
    # one the kernel queued on its slot's socket waits there for the replacement (the supervisor
    # holds the socket), new ones go to the living workers too.
    assert failures <= 2
    for _ in range(10):
        assert served_ok(gw.url + "/")
    assert gw.stop() == 0


def test_connections_queued_at_killed_workers_are_answered_by_their_replacements(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    """The supervisor holds each slot's listening socket: what the kernel queued there for a
    worker that dies is accepted by the worker that replaces it, not reset."""
    backend = make_backend()
    gw = make_gateway({**gateway_config(backend.url), "workers": 2})
    wait_for(lambda: len(worker_pids(gw)) == 2)
    workers = worker_pids(gw)
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)  # accepting nothing: new connections stay queued
    parts = urlsplit(gw.url)
    clients = []
    try:
        for _ in range(8):  # spread over both slots' sockets by SO_REUSEPORT
            client = socket.create_connection((parts.hostname, parts.port), timeout=15)
            client.sendall(b"GET / HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
            clients.append(client)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
    for client in clients:
        with client:
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert not workers & worker_pids(gw)
    assert gw.stderr().count("killed by signal 9") == 2


def test_sigterm_drains_in_flight_requests_and_exits_0(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway({**gateway_config(backend.url), "workers": 2})
    wait_for(lambda: len(worker_pids(gw)) == 2)
    workers = worker_pids(gw)
    slow = subprocess.Popen(
        ["curl", "-sS", "-i", "--max-time", "10", gw.url + "/slow?s=1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # the request is at the backend
    gw.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: len(re.findall(r"worker \d \(pid \d+\): stopping", gw.stderr())) == 2)
    # While the slow request drains, a new connection is refused (it does not wait in a queue
    # nobody accepts from): the supervisor let go of the sockets, the workers closed theirs.
    parts = urlsplit(gw.url)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    assert slow.poll() is None
    out, err = slow.communicate(timeout=15)
    assert slow.returncode == 0, err
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in out.lower()  # the draining worker said so
    assert gw.proc.wait(10) == 0
    log = gw.stderr()
    for pid in workers:
        assert f"(pid {pid}) exited 0 after draining" in log
    assert "outwork: stopped" in log
    assert not worker_pids(gw)
    with pytest.raises(AssertionError):
        assert served_ok(gw.url + "/")


def test_admin_runs_in_worker_0_only(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway({**gateway_config(backend.url), "workers": 2})
    assert gw.admin_url is not None
    assert len(re.findall(r"worker \d \(pid \d+\): admin on ", gw.stderr())) == 1
    assert curl(gw.admin_url + "/healthz").stdout == b"ok\n"
    assert b"# TYPE" in curl(gw.admin_url + "/metrics").stdout


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_workers_out_of_bounds_is_a_config_error(tmp_path: Path, value: str) -> None:
    config = tmp_path / "outwork.yaml"
    config.write_text(
        "listeners: [{name: public, bind: '127.0.0.1:0'}]\n"
        "routes: []\n"
        "upstreams: {}\n"
        f"workers: {value}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"{config}:4: workers: " in result.stderr


def test_workers_stop_when_the_supervisor_is_killed(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    """No orphans: a supervisor killed outright (SIGKILL, the OOM killer) takes its workers
    with it instead of leaving them serving a config nobody can reload."""
    backend = make_backend()
    gw = make_gateway({**gateway_config(backend.url), "workers": 2})
    wait_for(lambda: len(worker_pids(gw)) == 2)
    workers = worker_pids(gw)
    gw.proc.kill()
    gw.proc.wait()

    def alive(pid: int) -> bool:
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            return False
        return "\nState:\tZ" not in status

    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=45)
    assert not served_ok(gw.url + "/")
