"""Targets (from HOST:PORT arguments and a gateway config) and the concurrent scan of them."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable, Iterable

from outwork.scan.probes import Scanner
from outwork.scan.result import TargetResult

DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
DEFAULT_TIMEOUT = 5.0  # seconds, per connection
# A whole target (some tens of short connections) gets this many connection timeouts.
TARGET_TIMEOUT_FACTOR = 24
MAX_TARGETS = 4096
HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")


class TargetError(ValueError):
    """A HOST:PORT that is not one."""


def parse_target(text: str) -> TargetResult:
    """`host:port`, `[v6]:port`, or an `https://` / `http://` URL with a port or the default."""
    scheme = "https"
    rest = text.strip()
    for prefix in ("https://", "http://"):
        if rest.lower().startswith(prefix):
            scheme = prefix[:-3]
            rest = rest[len(prefix) :].split("/", 1)[0]
    default_port = {"https": 443, "http": 80}[scheme] if "://" in text else None
    bracketed = rest.startswith("[")
    if bracketed:
        host, sep, port_text = rest[1:].partition("]")
        if not sep or (port_text and not port_text.startswith(":")):
            raise TargetError(f"not HOST:PORT: {text!r}")
        port_text = port_text[1:]
    else:
        host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not port_text and default_port is not None:
        port_text = str(default_port)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"not HOST:PORT: {text!r}")
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"not an IPv6 address: {host!r}") from None
    elif not HOST_NAME.fullmatch(host):
        raise TargetError(f"not a host name or IPv4 address: {host!r}")
    return TargetResult(host=host, port=int(port_text), scheme=scheme)


def config_targets(config: object) -> list[TargetResult]:
    """Every target of every upstream in a loaded gateway config (duck-typed, so the
    scanner does not depend on the policy package)."""
    out = []
    for name, upstream in getattr(config, "upstreams", {}).items():
        tls = getattr(upstream, "tls", None)
        for address in upstream.targets:
            out.append(
                TargetResult(
                    host=address.host,
                    port=address.port,
                    scheme="https" if tls is not None else "http",
                    source=f"upstream {name}",
                    server_name=getattr(tls, "server_name", None),
                )
            )
    return out


def dedupe(targets: Iterable[TargetResult]) -> list[TargetResult]:
    seen: dict[tuple[str, int, str], TargetResult] = {}
    for t in targets:
        seen.setdefault((t.host, t.port, t.scheme), t)
    return list(seen.values())


async def scan_all(
    targets: list[TargetResult],
    concurrency: int,
    timeout: float,
    done: Callable[[TargetResult], None],
) -> None:
    """Scan every target, at most `concurrency` at once; `done` is called as each ends."""
    gate = asyncio.Semaphore(concurrency)

    async def one(target: TargetResult) -> None:
        async with gate:
            try:
                await asyncio.wait_for(
                    Scanner(target, timeout).run(), timeout * TARGET_TIMEOUT_FACTOR
                )
            except TimeoutError:
                target.error = target.error or "scan timed out (partial results)"
            except Exception as exc:  # a scanner bug must not lose the other targets' results
                target.error = f"scan failed: {type(exc).__name__}: {exc}"
            done(target)

    await asyncio.gather(*(one(t) for t in targets))


def scan_targets(
    targets: list[TargetResult],
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[TargetResult]:
    """Scan synchronously (for other commands, e.g. an incident's closing scan)."""
    asyncio.run(scan_all(targets, min(concurrency, MAX_CONCURRENCY), timeout, lambda t: None))
    return targets
