"""The loads `run.py` puts on a server, each returning what it measured as `Sample`s."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import (
    HOST,
    BenchError,
    Server,
    busiest_thread_seconds,
    thread_cpu_seconds,
    tree_cpu_seconds,
    tree_memory_kib,
)

CLIENTS = Path(__file__).resolve().parent / "clients.py"
MIB = 1024 * 1024
IDLE_PER_CLIENT = 2500  # idle connections per client process


@dataclass
class Sample:
    server: str
    workers: int
    metric: str
    value: float  # in the metric's unit (see METRICS)
    notes: dict[str, Any] = field(default_factory=dict)


def measure_keepalive(
    server: Server, duration: int, connections: int, script: Path | None = None
) -> Sample:
    """CPU µs per keep-alive request; notes the busiest thread's CPU for the scaling figure.
    `script`: a wrk Lua script saying what to send (default: GET /)."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise BenchError("wrk is not installed (Debian package wrk; `make bench`)")
    threads_before = thread_cpu_seconds(server.proc.pid)
    before = tree_cpu_seconds(server.proc.pid)
    t0 = time.monotonic()
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            *(["-s", str(script)] if script is not None else []),
            f"https://{HOST}:{server.port}/",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    wall = time.monotonic() - t0
    after = tree_cpu_seconds(server.proc.pid)
    busiest = busiest_thread_seconds(threads_before, thread_cpu_seconds(server.proc.pid))
    m = re.search(r"(\d+) requests in", out)
    if not m or not int(m.group(1)):
        raise BenchError(f"{server.name}: no requests completed; wrk said:\n{out}")
    requests = int(m.group(1))
    notes: dict[str, Any] = {
        "requests": requests,
        "cpu_seconds": round(after - before, 3),
        "wall_seconds": round(wall, 2),
        "busiest_thread_us_per_request": round(busiest * 1e6 / requests, 2),
    }
    if m2 := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        notes["non_2xx"] = int(m2.group(1))
    if m3 := re.search(r"Socket errors: (.*)", out):
        notes["socket_errors"] = m3.group(1).strip()
    if m4 := re.search(r"Requests/sec:\s+([\d.]+)", out):
        notes["requests_per_second"] = float(m4.group(1))
    value = (after - before) * 1e6 / requests
    return Sample(server.name, server.workers, "keepalive", value, notes)


def measure_handshakes(server: Server, seconds: int, clients: int, reuse: bool = False) -> Sample:
    """Full handshakes (`s_time -new`) or, with `reuse`, resumed ones (`s_time -reuse`: each
    client makes one full handshake, then resumes with that session's ticket)."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise BenchError("openssl is not installed")
    # s_time sends "GET <www> HTTP/1.0\r\n\r\n": no Host header, which a proxy forwarding
    # HTTP/1.1 upstream must then invent. Put a Host line in, so every server proxies the same
    # valid request; the trailing "X-Bench:" header swallows s_time's own " HTTP/1.0".
    www = "/ HTTP/1.0\r\nHost: localhost\r\nX-Bench:"
    argv = [
        openssl, "s_time", "-connect", f"{HOST}:{server.port}", "-reuse" if reuse else "-new",
        "-tls1_3", "-www", www, "-time", str(seconds),
    ]  # fmt: skip
    before = tree_cpu_seconds(server.proc.pid)
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(clients)
    ]
    outputs = [p.communicate(timeout=seconds + 60)[0] for p in procs]
    wall = time.monotonic() - t0
    after = tree_cpu_seconds(server.proc.pid)
    connections = 0
    bytes_read = 0
    marks = reused = 0
    for out in outputs:
        m = re.search(
            r"(\d+) connections in [\d.]+s; [\d.]+ connections/user sec, bytes read (\d+)", out
        )
        if not m:
            raise BenchError(f"cannot read `openssl s_time` output:\n{out}")
        connections += int(m.group(1))
        bytes_read += int(m.group(2))
        # s_time prints one character per connection: "r" when the session was resumed.
        progress = "".join(re.findall(r"^[r*3t]+$", out[: m.start()], re.MULTILINE))
        reused += progress.count("r")
        marks += len(progress)
    if not connections:
        raise BenchError(f"{server.name}: no connection completed under s_time")
    notes: dict[str, Any] = {
        "connections": connections,
        "bytes_per_connection": round(bytes_read / connections),
        "connections_per_second": round(connections / wall, 1),
    }
    if reuse:
        notes["resumed_fraction"] = round(reused / marks, 3) if marks else 0.0
    metric = "resumed" if reuse else "handshake"
    value = (after - before) * 1e6 / connections
    return Sample(server.name, server.workers, metric, value, notes)


def measure_download(server: Server, mib: int) -> Sample:
    """MB/s (10^6 bytes) of one `mib` MiB download over TLS 1.3 through the proxy."""
    curl = shutil.which("curl")
    if not curl:
        raise BenchError("curl is not installed")
    before = tree_cpu_seconds(server.proc.pid)
    done = subprocess.run(
        [
            curl, "-sS", "-k", "--tlsv1.3", "--http1.1", "-o", "/dev/null",
            "-w", "%{http_code} %{size_download} %{time_total}",
            f"https://{HOST}:{server.port}/big",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    cpu = tree_cpu_seconds(server.proc.pid) - before
    try:
        status, size, seconds = done.stdout.split()
    except ValueError:
        raise BenchError(f"{server.name}: curl failed: {done.stderr or done.stdout}") from None
    if status != "200" or int(size) != mib * MIB:
        raise BenchError(f"{server.name}: the download gave status {status}, {size} bytes")
    notes = {"seconds": float(seconds), "cpu_ms_per_mib": round(cpu * 1e3 / mib, 2)}
    value = int(size) / 1e6 / float(seconds)
    return Sample(server.name, server.workers, "download", value, notes)


def measure_latency(server: Server, rate: float, seconds: float, connections: int) -> list[Sample]:
    """p50 and p99 (ms) of GETs sent at `rate` per second over `connections` keep-alive TLS
    connections, timed from when each request was due (`clients.py latency`)."""
    done = subprocess.run(
        [sys.executable, str(CLIENTS), "latency", str(server.port), str(rate), str(seconds),
         str(connections)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"{server.name}: the latency client failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    latencies = result["latencies"]
    if len(latencies) < result["requests"] or not latencies:
        raise BenchError(
            f"{server.name}: {result['requests'] - len(latencies)} of {result['requests']} "
            f"paced requests failed: {result['errors']}"
        )
    notes = {"requests": len(latencies), "rate": rate, "max_ms": round(latencies[-1] * 1e3, 2)}

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3

    return [
        Sample(server.name, server.workers, "latency_p50", quantile(0.50), notes),
        Sample(server.name, server.workers, "latency_p99", quantile(0.99), notes),
    ]


def measure_idle(server: Server, count: int) -> Sample:
    """Total RSS (MiB) of the server's process tree with `count` idle TLS connections open,
    each having made its handshake and one request (`clients.py idle`, in several processes).
    A server that cannot hold that many (`server.max_idle`) gets fewer: the notes say so."""
    count = min(count, server.max_idle)
    time.sleep(0.5)
    base_rss, base_pss = tree_memory_kib(server.proc.pid)
    processes = max(1, math.ceil(count / IDLE_PER_CLIENT))
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    clients = [
        subprocess.Popen(
            [sys.executable, str(CLIENTS), "idle", str(server.port), str(share)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    opened = 0
    errors: dict[str, int] = {}
    try:
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline()
            if not line:
                raise BenchError(f"{server.name}: an idle-connection client died")
            report = json.loads(line)
            opened += report["open"]
            for reason, n in report["errors"].items():
                errors[reason] = errors.get(reason, 0) + n
        time.sleep(1.0)  # let the server settle (a worker may still be freeing handshake state)
        rss, pss = tree_memory_kib(server.proc.pid)
        alive = server.proc.poll() is None
    finally:
        for client in clients:
            assert client.stdin is not None
            client.stdin.close()
        for client in clients:
            client.wait(60)
    if not alive:
        raise BenchError(
            f"{server.name} died holding idle connections:\n{server.log.read_text()[-2000:]}"
        )
    notes: dict[str, Any] = {
        "connections": opened,
        "failed": count - opened,
        "errors": errors,
        "idle_rss_mib": round(base_rss / 1024, 1),
        "pss_mib": round(pss / 1024, 1),
        "rss_kib_per_connection": round((rss - base_rss) / opened, 2) if opened else None,
        "pss_kib_per_connection": round((pss - base_pss) / opened, 2) if opened else None,
    }
    return Sample(server.name, server.workers, "idle_rss", rss / 1024, notes)
