"""Reload (SIGHUP, `outwork reload`) under a keep-alive load: zero failed requests."""

from __future__ import annotations

import http.client
import os
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
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import Backend, Gateway, gateway_config
from tests.proxy.test_gateway import curl
from tests.proxy.test_workers import worker_pids


def backend_name(url: str) -> str:
    head = curl("-sI", url).stdout.lower()
    return head.split(b"x-backend: ")[1].split(b"\r\n")[0].decode()


class KeepAliveLoad:
    """A few threads, each looping GET over one persistent connection (a new one only when
    the gateway answers `Connection: close`; with `reconnect`, a new one for every request).
    Any exception or non-200 is a failure."""

    def __init__(
        self, url: str, connections: int = 4, reconnect: bool = False, seconds: float = 30
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.backends: Counter[str] = Counter()
        self.failures: list[str] = []
        self.closes = 0
        self.requests = 0
        self.reconnect = reconnect
        self.seconds = seconds
        self.threads = [threading.Thread(target=self._loop) for _ in range(connections)]

    def __enter__(self) -> KeepAliveLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        deadline = time.monotonic() + self.seconds  # bounded, whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                with self.lock:
                    self.requests += 1
                    self.backends[response.getheader("x-backend") or "?"] += 1
                    if response.status != 200:
                        self.failures.append(f"status {response.status}")
                if response.will_close or self.reconnect:
                    with self.lock:
                        self.closes += response.will_close
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            except Exception as exc:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        conn.close()


def outwork(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outwork", *args], capture_output=True, text=True, timeout=30
    )


MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


@pytest.fixture
def queued_connections_not_migrated() -> Iterator[None]:
    """`net.ipv4.tcp_migrate_req=0` (Linux's default) for the test, restored after: a connection
    queued at a listening socket that closes is reset, not moved to another socket of the port.
    The supervisor hands each worker's sockets to its successor, so none of them closes."""
    path = Path(MIGRATE_REQ)
    try:
        before = path.read_text()
        path.write_text("0")
    except OSError:  # not root, no such setting (before 5.14): the kernel's default stays
        yield
        return
    try:
        yield
    finally:
        path.write_text(before)


@pytest.mark.parametrize("workers", [2, 1])
def test_reload_under_keep_alive_load_fails_no_request(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    workers: int,
    queued_connections_not_migrated: None,
) -> None:
    a, b = make_backend("a"), make_backend("b")
    gw = make_gateway({**gateway_config(a.url), "workers": workers})
    assert backend_name(gw.url + "/") == "a"
    new = {**gateway_config(b.url), "workers": workers}
    with KeepAliveLoad(gw.url) as load:
        time.sleep(0.5)
        before = load.requests
        gw.config_file.write_text(yaml.safe_dump(new))
        result = outwork("reload", "-c", str(gw.config_file))
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 15
        while "outwork: reloaded" not in gw.stderr():
            assert time.monotonic() < deadline, gw.stderr()
            time.sleep(0.05)
        time.sleep(2.0)  # the old connections drain (idle ones after a 1 s grace)
    assert load.requests > before > 0
    assert load.failures == [], load.failures[:5]
    assert load.closes >= 1  # old connections were told `Connection: close`, not cut
    assert load.backends["a"] > 0 and load.backends["b"] > 0
    for _ in range(5):
        assert backend_name(gw.url + "/") == "b"
    if workers > 1:
        assert "exited 0 after draining" in gw.stderr()
    assert gw.stop() == 0


@pytest.mark.parametrize("workers", [2, 1])
def test_an_invalid_config_is_refused_and_the_old_one_keeps_running(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], workers: int
) -> None:
    a = make_backend("a")
    gw = make_gateway({**gateway_config(a.url), "workers": workers})
    broken = yaml.safe_dump({**gateway_config(a.url), "workers": workers})
    broken = broken.replace("upstream: backend", "upstream: nowhere")
    gw.config_file.write_text(broken)
    # `outwork reload` checks first and does not signal.
    result = outwork("reload", "-c", str(gw.config_file))
    assert result.returncode == 1
    assert "unknown upstream 'nowhere'" in result.stderr
    # A SIGHUP anyway: the gateway refuses it with the line-numbered problem and keeps serving.
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload refused" not in gw.stderr():
        assert time.monotonic() < deadline, gw.stderr()
        time.sleep(0.05)
    line = next(i for i, t in enumerate(broken.splitlines(), 1) if "nowhere" in t)
    assert f"{gw.config_file}:{line}: routes[0].upstream: unknown upstream" in gw.stderr()
    for _ in range(5):
        assert backend_name(gw.url + "/") == "a"
    assert gw.proc.poll() is None
    assert gw.stop() == 0


def test_reload_without_a_running_gateway_says_so(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("noserver")
    config = directory / "outwork.yaml"
    config.write_text(yaml.safe_dump(gateway_config("http://127.0.0.1:9")))
    result = outwork("reload", "-c", str(config))
    assert result.returncode == 1
    assert "cannot signal the gateway" in result.stderr


def test_reload_closes_idle_keep_alive_connections_of_old_workers(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    a = make_backend("a")
    gw = make_gateway({**gateway_config(a.url), "workers": 2})
    parts = urlsplit(gw.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    assert not response.will_close
    assert conn.sock is not None
    idle = conn.sock
    gw.proc.send_signal(signal.SIGHUP)  # same config: new workers all the same
    start = time.monotonic()
    assert idle.recv(1) == b""  # closed by the draining worker, after its idle grace
    assert time.monotonic() - start < 10
    deadline = time.monotonic() + 10
    while gw.stderr().count("exited 0 after draining") < 2:
        assert time.monotonic() < deadline, gw.stderr()
        time.sleep(0.05)
    assert backend_name(gw.url + "/") == "a"
    conn.close()


def _wait_for(gw: Gateway, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 15
    while gw.stderr().count(text) < count:
        assert time.monotonic() < deadline, gw.stderr()
        time.sleep(0.05)


def test_a_single_process_reload_opens_and_closes_listeners(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    a = make_backend("a")
    config = gateway_config(a.url)
    gw = make_gateway(config)
    first = gw.urls["public"]
    # A listener added: a new socket, while the first keeps its own (same bind address).
    config["listeners"].append({"name": "second", "bind": "127.0.0.1:0"})
    gw.config_file.write_text(yaml.safe_dump(config))
    gw.proc.send_signal(signal.SIGHUP)
    _wait_for(gw, "outwork: reloaded")
    found = re.search(r"outwork: listener second on (\S+)", gw.stderr())
    assert found is not None, gw.stderr()
    second = found.group(1)
    assert backend_name(first + "/") == "a"
    assert backend_name(second + "/") == "a"
    # A listener removed: its socket stops accepting; the other serves on.
    config["listeners"] = [li for li in config["listeners"] if li["name"] == "second"]
    gw.config_file.write_text(yaml.safe_dump(config))
    gw.proc.send_signal(signal.SIGHUP)
    _wait_for(gw, "outwork: reloaded", 2)
    parts = urlsplit(first)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    assert backend_name(second + "/") == "a"
    assert gw.stop() == 0


def test_a_reload_whose_listener_cannot_bind_is_refused(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    a, b = make_backend("a"), make_backend("b")
    gw = make_gateway(gateway_config(a.url))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        config = gateway_config(b.url)
        port = taken.getsockname()[1]
        config["listeners"].append({"name": "clash", "bind": f"127.0.0.1:{port}"})
        gw.config_file.write_text(yaml.safe_dump(config))
        gw.proc.send_signal(signal.SIGHUP)
        _wait_for(gw, "reload refused: cannot listen")
        # The old config keeps serving, with its upstream.
        for _ in range(3):
            assert backend_name(gw.url + "/") == "a"
    finally:
        taken.close()
    assert gw.stop() == 0


@pytest.mark.parametrize("workers", [2, 1])
@pytest.mark.parametrize(
    "damage", ["name: 2024-02-30", "name: !!int 0x", "name: !!python/name:os.system x"]
)
def test_a_reload_with_a_broken_yaml_value_keeps_the_gateway_and_its_pid_file(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    workers: int,
    damage: str,
) -> None:
    a, b = make_backend("a"), make_backend("b")
    gw = make_gateway({**gateway_config(a.url), "workers": workers})
    pid_file = gw.config_file.with_suffix(".pid")
    assert pid_file.read_text().strip() == str(gw.proc.pid)
    good = yaml.safe_dump({**gateway_config(b.url), "workers": workers})
    broken = good.replace("name: public", damage)
    assert broken != good
    gw.config_file.write_text(broken)
    gw.proc.send_signal(signal.SIGHUP)
    _wait_for(gw, "reload refused")
    assert "Traceback" not in gw.stderr()
    assert f"{gw.config_file}:" in gw.stderr().split("reloading")[-1]  # its line-numbered problem
    assert gw.proc.poll() is None
    assert pid_file.read_text().strip() == str(gw.proc.pid)
    for _ in range(3):
        assert backend_name(gw.url + "/") == "a"  # the old config answers
    # The file fixed: the next SIGHUP reloads it.
    gw.config_file.write_text(good)
    gw.proc.send_signal(signal.SIGHUP)
    _wait_for(gw, "outwork: reloaded")
    for _ in range(3):
        assert backend_name(gw.url + "/") == "b"
    assert gw.stop() == 0
    assert not pid_file.exists()


def test_new_connections_across_reloads_with_workers_are_never_reset(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    queued_connections_not_migrated: None,
) -> None:
    """Connections opened one after another while the workers are replaced, again and again:
    each one the kernel queued for an old worker is accepted by its successor, none is reset."""
    a, b = make_backend("a"), make_backend("b")
    configs = [{**gateway_config(backend.url), "workers": 2} for backend in (a, b)]
    gw = make_gateway(configs[0])
    reloads = 4
    counts: list[int] = []
    with KeepAliveLoad(gw.url, connections=16, reconnect=True, seconds=90) as load:
        for n in range(1, reloads + 1):
            time.sleep(0.3)
            counts.append(load.requests)
            gw.config_file.write_text(yaml.safe_dump(configs[n % 2]))
            gw.proc.send_signal(signal.SIGHUP)
            _wait_for(gw, "outwork: reloaded", n)
            _wait_for(gw, "exited 0 after draining", 2 * n)  # the old workers let go
        time.sleep(0.3)
        counts.append(load.requests)
    assert load.failures == [], load.failures[:5]
    assert all(before < after for before, after in zip(counts, counts[1:], strict=False))
    assert load.backends["a"] > 0 and load.backends["b"] > 0
    assert backend_name(gw.url + "/") == "a"  # the last config, the first one again
    assert gw.stop() == 0


def test_a_reload_with_workers_opens_and_closes_listeners_and_moves_the_admin(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    a = make_backend("a")
    config = {**gateway_config(a.url), "workers": 2}
    gw = make_gateway(config)
    first, first_admin = gw.urls["public"], gw.admin_url
    assert first_admin is not None
    # A listener added, and one more worker: both workers of the new generation (and the third,
    # on a socket of its own) serve it; the first listener keeps its port.
    config["listeners"].append({"name": "second", "bind": "127.0.0.1:0"})
    config["workers"] = 3
    gw.config_file.write_text(yaml.safe_dump(config))
    gw.proc.send_signal(signal.SIGHUP)
    _wait_for(gw, "outwork: reloaded")
    found = re.search(r"outwork: worker \d \(pid \d+\): listener second on (\S+)", gw.stderr())
    assert found is not None, gw.stderr()
    second = found.group(1)
    for _ in range(6):
        assert backend_name(first + "/") == "a"
        assert backend_name(second + "/") == "a"
    # The first listener removed, the admin moved: both old sockets close once the old workers
    # stop accepting; the second listener and the new admin serve.
    config["listeners"] = [li for li in config["listeners"] if li["name"] == "second"]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    config["admin"] = {"bind": f"127.0.0.1:{port}"}
    config["workers"] = 2
    gw.config_file.write_text(yaml.safe_dump(config))
    gw.proc.send_signal(signal.SIGHUP)
    _wait_for(gw, "outwork: reloaded", 2)
    _wait_for(gw, "exited 0 after draining", 5)
    for url in (first, first_admin):
        parts = urlsplit(url)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    for _ in range(6):
        assert backend_name(second + "/") == "a"
    assert curl(f"http://127.0.0.1:{port}/healthz").stdout == b"ok\n"
    assert gw.stop() == 0


def test_connections_queued_for_stopped_old_workers_are_answered_by_the_new_ones(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    queued_connections_not_migrated: None,
) -> None:
    """A new worker accepts from the socket of the worker it succeeds: connections queued there
    (the old workers frozen, accepting nothing) are answered by the new config's workers."""
    a, b = make_backend("a"), make_backend("b")
    gw = make_gateway({**gateway_config(a.url), "workers": 2})
    old = worker_pids(gw)
    for pid in old:
        os.kill(pid, signal.SIGSTOP)
    parts = urlsplit(gw.url)
    clients = []
    try:
        for _ in range(8):  # queued on both slots' sockets (SO_REUSEPORT hashes them)
            client = socket.create_connection((parts.hostname, parts.port), timeout=15)
            client.sendall(b"GET / HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
            clients.append(client)
        gw.config_file.write_text(yaml.safe_dump({**gateway_config(b.url), "workers": 2}))
        gw.proc.send_signal(signal.SIGHUP)
        _wait_for(gw, "outwork: reloaded")
        for client in clients:
            with client:
                answer = b""
                while chunk := client.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            assert b"\r\nx-backend: b\r\n" in answer.lower()
    finally:
        for pid in old:
            os.kill(pid, signal.SIGCONT)  # and they drain (their SIGTERM was waiting)
    _wait_for(gw, "exited 0 after draining", 2)
    assert gw.stop() == 0
