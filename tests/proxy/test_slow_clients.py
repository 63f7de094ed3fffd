"""Slow clients cannot starve others: `slowhttptest` (slowloris, slow body, slow read) against
a running gateway while a probe client keeps asking for a page; every probe must get a 200,
and slowhttptest's own verdict must be "service available: YES" from start to end.

Run with `-s` to see the verdict table."""

from __future__ import annotations

import csv
import http.client
import json
import re
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, Backend, Gateway, gateway_config, require_tool

SECONDS = 15  # each attack's length (slowhttptest -l)
CONNECTIONS = 200  # within the default caps (10000 per listener, 256 per address)
ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
# By test id: attack, listener, verdict, probe 200s, most backend connections open at once
# (-1: not watched).
VERDICTS: dict[str, tuple[str, str, str, int, int]] = {}

# slowhttptest arguments per attack; the target path is appended to the listener's URL.
ATTACKS = {
    # Slowloris: a header line every 2 s, the head never ends (header_timeout cuts it at 10 s).
    "slowloris": (["-H", "-i", "2"], "/"),
    # R-U-Dead-Yet: a POST announcing 8 KiB of body, sent a few bytes every 2 s.
    "slow-body": (["-B", "-i", "2", "-s", "8192"], "/echo"),
    # Slow read: three pipelined 300 KB downloads per connection through a 10-20 byte window,
    # 32 bytes read a second.
    "slow-read": (
        ["-X", "-k", "3", "-n", "1", "-w", "10", "-y", "20", "-z", "32"],
        "/bytes?n=300000",
    ),
}


class Probe:
    """A client that asks for / on a new connection every 0.1 s until stopped, counting the
    answers; anything but a 200 (an error, a timeout) is a failure."""

    def __init__(self, url: str, context: ssl.SSLContext | None, source: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 0
        self.context = context
        self.source = source
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _connection(self) -> http.client.HTTPConnection:
        address = (self.source, 0)
        if self.context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=10, context=self.context, source_address=address
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=10, source_address=address)

    def _loop(self) -> None:
        while not self.stop.is_set():
            conn = self._connection()
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()
            self.stop.wait(0.1)

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


class BackendWatch:
    """Samples the backend's open connections (its /stats, asked directly) until stopped."""

    def __init__(self, backend: Backend) -> None:
        parts = urlsplit(backend.url)
        self.host, self.port = parts.hostname or "", parts.port or 0
        self.most_open = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                conn.request("GET", "/stats")
                stats = json.loads(conn.getresponse().read())
                self.most_open = max(self.most_open, stats["open"] - 1)  # not this one
            finally:
                conn.close()
            self.stop.wait(0.2)

    def __enter__(self) -> BackendWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def slowhttptest(args: list[str], url: str, out: Path) -> tuple[list[str], list[int]]:
    """Run one attack; returns (its "service available" verdicts in order, the CSV's
    availability column: non-zero while its own probe connection got answers)."""
    binary = require_tool("slowhttptest")
    command = [binary, *args, "-c", str(CONNECTIONS), "-r", "100", "-l", str(SECONDS)]
    command += ["-p", "5", "-u", url, "-g", "-o", str(out)]
    result = subprocess.run(command, capture_output=True, timeout=SECONDS + 60)
    text = ANSI.sub(b"", result.stdout + result.stderr).decode(errors="replace")
    verdicts = re.findall(r"service available:\s*(YES|NO)", text)
    with open(out.with_suffix(".csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    return verdicts, [int(row["Service Available"]) for row in rows]


@pytest.fixture
def slow_gateway(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> Iterator[tuple[Gateway, Backend]]:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True)
    backend = make_backend()
    config = gateway_config(
        backend.url,
        listeners=[
            {"name": "plain", "bind": "127.0.0.1:0"},
            {
                "name": "tls",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": "cert.pem", "key": "key.pem"}]},
            },
        ],
    )
    yield make_gateway(config), backend


@pytest.mark.parametrize(
    ("attack", "listener"),
    [
        ("slowloris", "plain"),
        ("slow-body", "plain"),
        ("slow-read", "plain"),
        ("slowloris", "tls"),
        ("slow-body", "tls"),
    ],
)
def test_service_stays_available_under_slow_clients(
    slow_gateway: tuple[Gateway, Backend],
    tmp_path: Path,
    attack: str,
    listener: str,
    request: pytest.FixtureRequest,
) -> None:
    gateway, backend = slow_gateway
    url = gateway.urls[listener]
    context = None
    if listener == "tls":
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    args, path = ATTACKS[attack]
    with BackendWatch(backend) as watch, Probe(url, context, "127.0.0.1") as probe:
        verdicts, available = slowhttptest(args, url + path, tmp_path / attack)
    verdict = verdicts[-1] if verdicts else "?"
    VERDICTS[request.node.name] = (attack, listener, verdict, probe.ok, watch.most_open)
    assert probe.failures == []
    assert probe.ok > 0
    assert verdicts and set(verdicts) == {"YES"}, verdicts
    assert available and all(available), available
    if attack != "slow-read":
        # Slow heads and small slow bodies are read whole before an upstream connection is
        # taken: the attack's connections hold no backend connection (the probe's few do).
        assert watch.most_open < CONNECTIONS // 10, watch.most_open


def test_per_address_cap_keeps_a_flood_from_one_address_off_others(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Slowloris from one address with more connections than its cap: the extra ones are
    refused, and a client at another address is served throughout."""
    backend = make_backend()
    config = gateway_config(
        backend.url,
        listeners=[{"name": "plain", "bind": "127.0.0.1:0", "max_connections_per_ip": 50}],
    )
    gateway = make_gateway(config)
    with Probe(gateway.url, None, "127.0.0.2") as probe:
        verdicts, _ = slowhttptest(ATTACKS["slowloris"][0], gateway.url + "/", tmp_path / "cap")
    # slowhttptest's own probe comes from the capped address: its verdict is not the point.
    verdict = verdicts[-1] if verdicts else "?"
    VERDICTS[request.node.name] = ("slowloris > cap", "plain", verdict, probe.ok, -1)
    assert probe.failures == []
    assert probe.ok > 0
    metrics = subprocess.run(
        ["curl", "-s", f"{gateway.admin_url}/metrics"], capture_output=True, text=True
    ).stdout
    refused = re.search(r'reason="max_connections_per_ip"\} (\d+)', metrics)
    assert refused is not None and int(refused.group(1)) > 0


def test_verdict_table(request: pytest.FixtureRequest) -> None:
    """Runs after the attacks (same module, declared later; `-s` prints it): the table for the
    report. It covers every attack this session selected and reads as the issue asks: the probe
    was served in each, slowhttptest saw the service available (not for the capped address:
    its own probe comes from there), and slow heads and bodies held no backend connection."""
    attacks = (
        test_service_stays_available_under_slow_clients,
        test_per_address_cap_keeps_a_flood_from_one_address_off_others,
    )
    selected = {
        item.name
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.function in attacks
    }
    assert set(VERDICTS) == selected, f"attacks without a verdict: {selected - set(VERDICTS)}"
    print(f"\nslowhttptest, {CONNECTIONS} connections, {SECONDS} s each")
    print(f"{'attack':<18}{'listener':<10}{'verdict':<9}{'probe 200s':>11}{'backend conns':>15}")
    for attack, listener, verdict, ok, most_open in VERDICTS.values():
        conns = str(most_open) if most_open >= 0 else "-"
        print(f"{attack:<18}{listener:<10}{verdict:<9}{ok:>11}{conns:>15}")
    for attack, listener, verdict, ok, most_open in VERDICTS.values():
        row = (attack, listener, verdict, ok, most_open)
        assert ok > 0, row
        if most_open >= 0:  # not the capped address
            assert verdict == "YES", row
        if most_open >= 0 and attack != "slow-read":
            assert most_open < CONNECTIONS // 10, row
