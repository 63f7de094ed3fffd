"""`ban:` through a running gateway: a Heartbleed probe from 127.0.0.2 gets that address refused
at accept (before TLS), 127.0.0.1 is exempt, other security events ban when their weights reach
`count` (one WAF block weighs 3), and with `workers: 2` a ban made in one worker refuses on the
other; a page the WAF refuses for leaking weighs nothing by default."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from tests.conftest import Backend, Gateway, gateway_config, metric_sum
from tests.e2e import tls_raw
from tests.e2e.test_heartbleed import probe_record
from tests.proxy import test_listener_tls
from tests.proxy.test_listener_tls import Pki, port_of, tls_config
from tests.redis_servers import redis_server

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared
BANNED = "outwork_requests_refused_total"


def _connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def _send_and_wait_close(sock: socket.socket, data: bytes) -> None:
    """Send, then read until the gateway closes: it has handled what it got."""
    with sock:
        sock.sendall(data)
        tls_raw.receive(sock, total_timeout=5)


def _probe(source: str, port: int) -> None:
    _send_and_wait_close(_connect_from(source, port), probe_record("bare"))


def _served(source: str, port: int, ca: Path) -> bool:
    """Whether a TLS handshake from `source` completes (a banned address is cut before)."""
    context = ssl.create_default_context(cafile=str(ca))
    sock = _connect_from(source, port)
    try:
        with context.wrap_socket(sock, server_hostname="localhost"):
            return True
    except (ConnectionError, ssl.SSLError):
        return False
    finally:
        sock.close()


def _events(gw: Gateway) -> list[dict[str, Any]]:
    path = gw.config_file.parent / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _gateway(
    make_gateway: Any, backend: Backend, pki: Pki, tmp_path: Path, **extra: Any
) -> Gateway:
    config = tls_config(backend, pki, tmp_path)
    config.update(extra)
    return make_gateway(config)


def test_a_heartbleed_probe_bans_its_address_but_not_localhost(
    make_gateway: Any, backend: Backend, pki: Pki, tmp_path: Path
) -> None:
    gw = _gateway(make_gateway, backend, pki, tmp_path, ban={})
    port = port_of(gw)
    assert _served("127.0.0.2", port, pki.ca)
    _probe("127.0.0.2", port)
    assert not _served("127.0.0.2", port, pki.ca)
    assert not _served("127.0.0.2", port, pki.ca)
    # The same probe from 127.0.0.1 (exempt by default) bans nothing.
    _probe("127.0.0.1", port)
    assert _served("127.0.0.1", port, pki.ca)
    assert _served("127.0.0.3", port, pki.ca)  # another address is not touched either
    assert gw.metric(BANNED, reason="banned") == 2
    events = _events(gw)
    added = [e for e in events if e["event"] == "ban.added"]
    assert len(added) == 1
    assert added[0]["peer"].startswith("127.0.0.2:")
    assert added[0]["detail"] == {
        "address": "127.0.0.2",
        "cause": "tls.heartbleed_probe",
        "seconds": 600.0,
    }
    refused = [e for e in events if e["event"] == "ban.refused"]
    assert len(refused) == 2 and all(e["peer"].startswith("127.0.0.2:") for e in refused)


def test_without_a_ban_section_nobody_is_banned(
    make_gateway: Any, backend: Backend, pki: Pki, tmp_path: Path
) -> None:
    gw = _gateway(make_gateway, backend, pki, tmp_path)
    port = port_of(gw)
    _probe("127.0.0.2", port)
    assert _served("127.0.0.2", port, pki.ca)


def test_failed_handshakes_ban_after_count(
    make_gateway: Any, backend: Backend, pki: Pki, tmp_path: Path
) -> None:
    ban = {"after": {"count": 3, "within": "60s"}, "exempt": []}
    gw = _gateway(make_gateway, backend, pki, tmp_path, ban=ban)
    port = port_of(gw)
    garbage = tls_raw.record(tls_raw.HANDSHAKE, b"\x01\x00\x00\x01\x00")  # a broken ClientHello
    for _ in range(2):
        _send_and_wait_close(_connect_from("127.0.0.1", port), garbage)
    assert _served("127.0.0.1", port, pki.ca)  # two events: not yet
    _send_and_wait_close(_connect_from("127.0.0.1", port), garbage)
    assert not _served("127.0.0.1", port, pki.ca)  # the third banned (exempt: [] here)
    added = [e for e in _events(gw) if e["event"] == "ban.added"]
    assert [e["detail"]["cause"] for e in added] == ["tls.handshake_failed"]


def test_a_ban_made_in_one_worker_refuses_on_the_other(
    make_gateway: Any, backend: Backend, pki: Pki, tmp_path: Path
) -> None:
    gw = _gateway(make_gateway, backend, pki, tmp_path, ban={}, workers=2)
    port = port_of(gw)
    _probe("127.0.0.2", port)
    # SO_REUSEPORT spreads connections over both workers (by their source port): 20 of them
    # all refused means both workers refuse (one worker alone would take all 20 once in 2^19).
    assert [_served("127.0.0.2", port, pki.ca) for _ in range(20)] == [False] * 20
    deadline = time.monotonic() + 10  # each worker publishes its counters about once a second
    while metric_sum(gw.scrape(), BANNED, reason="banned") < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric_sum(gw.scrape(), BANNED, reason="banned") == 20
    assert _served("127.0.0.1", port, pki.ca)


def test_a_ban_reaches_another_gateway_through_redis(
    make_gateway: Any, backend: Backend, pki: Pki, tmp_path: Path
) -> None:
    with redis_server(tmp_path / "redis") as redis:
        gateways = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            config = tls_config(backend, pki, tmp_path / name)
            config.update(ban={}, redis={"url": redis.url, "timeout": 2.0})
            gateways.append(make_gateway(config, name=f"{name}/outwork.yaml"))
        first, second = (port_of(gw) for gw in gateways)
        assert _served("127.0.0.2", second, pki.ca)
        _probe("127.0.0.2", first)
        deadline = time.monotonic() + 10  # the other gateway pulls the bans once a second
        while _served("127.0.0.2", second, pki.ca):
            assert time.monotonic() < deadline, "the ban did not reach the other gateway"
            time.sleep(0.2)
        assert redis.command("ZRANGE", "outwork:bans", "0", "-1").split() == ["127.0.0.2"]
        assert _served("127.0.0.1", second, pki.ca)


def _plain_get(source: str, port: int, target: str) -> bytes:
    """The gateway's answer to one HTTP/1.1 GET from `source` (b"" when it closes at once)."""
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with _connect_from(source, port) as sock:
        try:
            sock.sendall(request)
        except OSError:  # reset at accept
            return b""
        return tls_raw.receive(sock, total_timeout=5).data


def test_one_waf_block_weighs_as_much_as_three_mistakes(
    make_gateway: Any, backend: Backend
) -> None:
    config = gateway_config(
        backend.url,
        policies={"crs": {"waf": {}}},
        default_policies=["crs"],
        logging={"security_events": "events.jsonl"},
        ban={"after": {"count": 3, "within": "60s"}, "exempt": []},
    )
    gw = make_gateway(config)
    port = int(gw.url.rpartition(":")[2])
    assert _plain_get("127.0.0.3", port, "/api?page=2").startswith(b"HTTP/1.1 200")
    xss = "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"
    assert _plain_get("127.0.0.2", port, xss).startswith(b"HTTP/1.1 403")
    assert _plain_get("127.0.0.2", port, "/api?page=2") == b""  # banned: closed at accept
    assert _plain_get("127.0.0.3", port, "/api?page=2").startswith(b"HTTP/1.1 200")
    added = [e for e in _events(gw) if e["event"] == "ban.added"]
    assert [(e["detail"]["address"], e["detail"]["cause"]) for e in added] == [
        ("127.0.0.2", "waf.blocked")
    ]


def test_a_page_refused_for_leaking_weighs_nothing_unless_weighed(
    make_gateway: Any, backend: Backend
) -> None:
    """A response the WAF refuses (an SQL error page, phase 4) writes `waf.response_blocked`,
    which weighs 0: a client that asks for a leaking page again and again is not banned for the
    backend's fault; `ban.weights` can weigh it."""

    def gateway(name: str, weights: dict[str, int]) -> tuple[Gateway, int]:
        config = gateway_config(
            backend.url,
            policies={"crs": {"waf": {}}},
            default_policies=["crs"],
            logging={"security_events": f"{name}.jsonl"},
            ban={"after": {"count": 3, "within": "60s"}, "exempt": [], "weights": weights},
        )
        gw = make_gateway(config, name=f"{name}.yaml")
        return gw, int(gw.url.rpartition(":")[2])

    _, port = gateway("honest", {})  # the default weights
    for _ in range(4):
        assert _plain_get("127.0.0.2", port, "/page?name=sql").startswith(b"HTTP/1.1 403")
    assert _plain_get("127.0.0.2", port, "/page?name=benign").startswith(b"HTTP/1.1 200")
    weighed, weighed_port = gateway("weighed", {"waf.response_blocked": 1})
    for _ in range(3):
        assert _plain_get("127.0.0.2", weighed_port, "/page?name=sql").startswith(b"HTTP/1.1 403")
    assert _plain_get("127.0.0.2", weighed_port, "/page?name=benign") == b""  # banned
    honest_events = [e["event"] for e in _events_named(weighed, "honest")]
    assert honest_events.count("waf.response_blocked") == 4 and "ban.added" not in honest_events
    assert "waf.blocked" not in honest_events
    added = [e for e in _events_named(weighed, "weighed") if e["event"] == "ban.added"]
    assert [e["detail"]["cause"] for e in added] == ["waf.response_blocked"]


def _events_named(gw: Gateway, name: str) -> list[dict[str, Any]]:
    path = gw.config_file.parent / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]
