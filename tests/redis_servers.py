"""Real Redis servers for the tests, on loopback: standalone and a 3-master cluster.

Ports are picked by binding port 0 (the kernel's free port), checked free again with the
cluster bus port (+10000) for cluster nodes, and a server that fails to start (a port taken
in between) is retried on another."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require_tool

START_TIMEOUT = 15.0


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(bus: bool = False) -> int:
    """A free loopback port (and its cluster bus port, port + 10000, when `bus`)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not bus or (port + 10000 <= 65535 and _bindable(port + 10000)):
            return port


class RedisServer:
    def __init__(self, folder: Path, cluster: bool = False) -> None:
        self.server = require_tool("redis-server")
        self.cli = require_tool("redis-cli")
        self.cluster = cluster
        for _ in range(5):
            self.port = free_port(bus=cluster)
            self.folder = folder / f"redis-{self.port}"
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.start():
                return
        raise AssertionError(f"redis-server did not start:\n{self.log.read_text()}")

    def start(self) -> bool:
        """Start (again) on this server's port; False when it did not come up."""
        args = [self.server, *self.first_args()]
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.folder)]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self.log = self.folder / "redis.log"
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        if self._wait_ready():
            return True
        self.stop()
        return False

    def first_args(self) -> list[str]:
        return []

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.command("PING").strip() == "PONG":
                return True
            time.sleep(0.05)
        return False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> str:
        got = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return got.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_cluster(folder: Path, masters: int = 3) -> Iterator[list[RedisServer]]:
    nodes: list[RedisServer] = []
    try:
        for _ in range(masters):
            nodes.append(RedisServer(folder, cluster=True))
        cli = nodes[0].cli
        subprocess.run(
            [cli, "--cluster", "create", *(n.address for n in nodes)]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not all("cluster_state:ok" in n.command("CLUSTER", "INFO") for n in nodes):
            if time.monotonic() > deadline:
                raise AssertionError("the redis cluster did not become ready")
            time.sleep(0.1)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


class SentinelServer(RedisServer):
    """A Sentinel (`redis-server sentinel.conf --sentinel`) watching `master` as `service`."""

    def __init__(self, folder: Path, master: RedisServer, service: str) -> None:
        self.watch = (master.port, service)
        super().__init__(folder)

    def first_args(self) -> list[str]:
        conf = self.folder / "sentinel.conf"
        port, service = self.watch
        conf.write_text(f"sentinel monitor {service} 127.0.0.1 {port} 1\n")
        return [str(conf), "--sentinel"]
