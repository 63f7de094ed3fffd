"""`make bench`: outwork, nginx and HAProxy side by side: same certificate, same backend, one
worker each, then two workers each.

Measured for each server, alternating the servers over several rounds and taking medians:
- CPU µs per keep-alive HTTPS request (1 KiB response): `wrk` for a fixed time;
- CPU µs per new connection: a full TLS 1.3 handshake plus one GET, from several parallel
  `openssl s_time -new` clients (they never resume a session);
- CPU µs per resumed connection (one worker only): a TLS 1.3 PSK handshake plus one GET, from
  parallel `openssl s_time -reuse` clients;
- MB/s of one 100 MiB download over TLS through the proxy (`curl`; the backend serves it);
- p50/p99 latency of GETs sent at a fixed rate well below saturation (`clients.py latency`);
- once per server: total RSS of its process tree with 10,000 idle TLS connections open (each
  made its handshake and one request; `clients.py idle`);
- one worker only: CPU µs per new connection with the key in an HSM (SoftHSM2) against the same
  with a key file, outwork against outwork;
- one worker only: CPU µs per keep-alive request with a typical security policy (API key, a local
  rate limit, JSON threat protection on a 1 KiB JSON POST, security headers) against the same
  POSTs through outwork without a policy; once at saturation (wrk as fast as it can) and once
  paced (each wrk connection waits `--paced-delay` ms between requests, so both gateways answer
  the same few thousand requests/s and the figure compares the work per request, not how a
  saturated event loop batches wake-ups).
CPU is the server's own accounting, /proc/PID/stat utime+stime summed over its whole process
tree, sampled before and after each load, divided by the requests or connections completed.
The backend is a plain-HTTP nginx serving a static 1 KiB file and a 100 MiB one; its CPU is not
counted.

Worker scaling is CPU-normalized (the load tools share the machine's cores with the servers, so
requests/s at saturation would measure the machine, not the server): a server's capacity is the
requests per CPU-second of its busiest thread (a worker process, or an HAProxy thread) under the
keep-alive load, since that thread saturates its core first; scaling = capacity with two
workers / capacity with one. It is 2.0 when the second worker takes half the load at no extra
cost per request, 1.0 when it takes none.

Prints the table (and ratios against nginx), whether outwork meets its aims, and writes the raw
figures as JSON to bench/results/. Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import (
    Sample,
    measure_download,
    measure_handshakes,
    measure_idle,
    measure_keepalive,
    measure_latency,
)
from servers import (
    POLICY_SCRIPT,
    REPO,
    BenchError,
    Server,
    check_serves_body,
    make_certificate,
    make_hsm_key,
    start_haproxy,
    start_nginx,
    start_outwork,
)

METRICS = {
    "keepalive": "CPU µs per keep-alive HTTPS request (1 KiB)",
    "handshake": "CPU µs per new connection (TLS 1.3 handshake + GET)",
    "resumed": "CPU µs per resumed connection (TLS 1.3 PSK + GET)",
    "download": "MB/s, {mib} MiB download over TLS (higher is better)",
    "latency_p50": "latency p50, ms, at {rate:g} requests/s",
    "latency_p99": "latency p99, ms, at {rate:g} requests/s",
    "idle_rss": "RSS MiB, {idle} idle TLS connections (process tree)",
    "idle_kib": "RSS KiB per idle TLS connection",
}
HSM_LABEL = "CPU µs per new connection, key in SoftHSM2 vs key file (P-256)"
POLICY_LABEL = "CPU µs per keep-alive 1 KiB JSON POST, typical policy vs none"
POLICY_PACED_LABEL = "the same, paced: {rate:,.0f} requests/s ({delay:g} ms between requests)"
AIM_POLICY_RATIO = 1.3
REFERENCE = "nginx"
KINDS = ("outwork", "nginx", "haproxy", "nginx-2")
AIM_KEEPALIVE_RATIO = 2.0
AIM_SCALING = 1.7
AIM_IDLE_RSS_MIB = 400
AIM_IDLE_CONNECTIONS = 10_000


def start_server(
    kind: str, workers: int, workdir: Path, tls: tuple[Path, Path], backend: int, idle: int
) -> Server:
    folder = workdir / f"{kind}-{workers}w"
    connections = max(4096, idle + 1024)
    if kind == "outwork":
        return start_outwork(folder, tls, backend, workers=workers, connections=connections)
    if kind == "haproxy":
        return start_haproxy(kind, folder, tls, backend, threads=workers, connections=connections)
    return start_nginx(
        kind, folder, tls=tls, upstream=backend, workers=workers, connections=connections
    )


def measure_round(server: Server, args: argparse.Namespace) -> list[Sample]:
    samples = [measure_keepalive(server, args.duration, args.connections)]
    samples.append(measure_handshakes(server, args.handshake_time, args.handshake_clients))
    if server.workers == 1 and not args.no_resumed:
        samples.append(
            measure_handshakes(server, args.handshake_time, args.handshake_clients, reuse=True)
        )
    if args.download_mib:
        samples.append(measure_download(server, args.download_mib))
    if args.latency_rate:
        samples += measure_latency(
            server, args.latency_rate, args.latency_time, args.latency_connections
        )
    if server.proc.poll() is not None:
        raise BenchError(f"{server.name} died during the run:\n{server.log.read_text()[-2000:]}")
    return samples


def describe(samples: list[Sample]) -> str:
    parts = []
    for s in samples:
        if s.metric == "keepalive":
            parts.append(f"{s.value:.1f} µs/request ({s.notes.get('requests_per_second')} req/s)")
        elif s.metric in ("handshake", "resumed"):
            parts.append(f"{s.value:.0f} µs/{'resumed' if s.metric == 'resumed' else 'new'}")
        elif s.metric == "download":
            parts.append(f"{s.value:.0f} MB/s")
        elif s.metric == "latency_p50":
            parts.append(f"p50 {s.value:.2f} ms")
        elif s.metric == "latency_p99":
            parts.append(f"p99 {s.value:.2f} ms")
    return ", ".join(parts)


def run_configuration(
    workers: int, args: argparse.Namespace, workdir: Path, tls: tuple[Path, Path], backend: int
) -> list[Sample]:
    servers: list[Server] = []
    samples: list[Sample] = []
    try:
        for kind in args.servers:
            servers.append(
                start_server(kind, workers, workdir, tls, backend, args.idle_connections)
            )
        outwork = next((s for s in servers if s.name == "outwork"), None)
        policy: Server | None = None
        if outwork is not None and workers == 1 and not args.no_policy:
            policy = start_outwork(
                workdir / "outwork-policy", tls, backend, name="outwork-policy", policy=True
            )
            servers.append(policy)
        script = workdir / "policy.lua"
        script.write_text(POLICY_SCRIPT)
        # wrk calls delay() before each request of a connection: milliseconds to wait.
        paced_script = workdir / "policy-paced.lua"
        paced_script.write_text(
            f"{POLICY_SCRIPT}\nfunction delay()\n  return {args.paced_delay}\nend\n"
        )
        hsm: Server | None = None
        if outwork is not None and workers == 1 and not args.no_hsm:
            hsm_tls, hsm_env = make_hsm_key(workdir)
            hsm = start_outwork(
                workdir / "outwork-hsm", hsm_tls, backend, name="outwork-hsm", env=hsm_env
            )
            servers.append(hsm)
        for server in servers:
            check_serves_body(server, policy=server is policy)
        compared = [s for s in servers if s is not hsm and s is not policy]
        for r in range(args.rounds):
            k = r % len(compared)  # each server goes first in turn
            for server in compared[k:] + compared[:k]:
                measured = measure_round(server, args)
                samples += measured
                print(
                    f"{workers} worker(s), round {r + 1}/{args.rounds}, {server.name:>8}: "
                    f"{describe(measured)}",
                    flush=True,
                )
            if hsm is not None and outwork is not None:
                # File key against HSM key, alternating which goes first.
                pair = (hsm, outwork) if r % 2 == 0 else (outwork, hsm)
                for server in pair:
                    hs = measure_handshakes(server, args.handshake_time, args.handshake_clients)
                    hs.metric = "hsm-pair"
                    samples.append(hs)
                    print(
                        f"{workers} worker(s), round {r + 1}/{args.rounds}, {server.name}: "
                        f"{hs.value:.0f} µs/new",
                        flush=True,
                    )
            if policy is not None and outwork is not None:
                # The same POSTs with and without the policy, alternating which goes first.
                pair = (policy, outwork) if r % 2 == 0 else (outwork, policy)
                for metric, lua, how in (
                    ("policy-pair", script, ""),
                    ("policy-paced", paced_script, ", paced"),
                ):
                    for server in pair:
                        ka = measure_keepalive(server, args.duration, args.connections, lua)
                        ka.metric = metric
                        samples.append(ka)
                        print(
                            f"{workers} worker(s), round {r + 1}/{args.rounds}, {server.name}: "
                            f"{ka.value:.1f} µs/request (1 KiB JSON POST{how}, "
                            f"{ka.notes.get('requests_per_second', 0):,.0f}/s)",
                            flush=True,
                        )
        if hsm is not None:
            hsm.stop()
        if policy is not None:
            policy.stop()
        if args.idle_connections:
            for server in compared:
                idle = measure_idle(server, args.idle_connections)
                samples.append(idle)
                per_connection = idle.notes["rss_kib_per_connection"] or math.nan
                samples.append(Sample(server.name, workers, "idle_kib", per_connection, idle.notes))
                print(
                    f"{workers} worker(s), {server.name:>8}: {idle.value:.1f} MiB RSS with "
                    f"{idle.notes['connections']} idle TLS connections "
                    f"({idle.notes['rss_kib_per_connection']} KiB each; idle "
                    f"{idle.notes['idle_rss_mib']} MiB; PSS {idle.notes['pss_mib']} MiB)",
                    flush=True,
                )
    finally:
        for server in reversed(servers):
            server.stop()
    return samples


def median(samples: list[Sample], server: str, workers: int, metric: str) -> float:
    values = [
        s.value
        for s in samples
        if s.server == server and s.workers == workers and s.metric == metric
    ]
    return statistics.median(values) if values else math.nan


def busiest_median(samples: list[Sample], server: str, workers: int) -> float:
    values = [
        s.notes["busiest_thread_us_per_request"]
        for s in samples
        if s.server == server and s.workers == workers and s.metric == "keepalive"
    ]
    return statistics.median(values) if values else math.nan


def rps_median(samples: list[Sample], server: str, workers: int) -> float:
    values = [
        s.notes.get("requests_per_second", math.nan)
        for s in samples
        if s.server == server and s.workers == workers and s.metric == "keepalive"
    ]
    return statistics.median(values) if values else math.nan


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    width = max(len(r[0]) for r in [header, *rows])
    cols = [max(len(r[i]) for r in [header, *rows]) for i in range(1, len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        cells = "  ".join(f"{c:>{w}}" for c, w in zip(row[1:], cols, strict=True))
        print(f"{row[0]:<{width}}  {cells}")


def report(samples: list[Sample], args: argparse.Namespace) -> dict[str, Any]:
    names = list(args.servers)
    others = [n for n in names if n != REFERENCE]
    labels = {
        m: label.format(mib=args.download_mib, rate=args.latency_rate, idle=args.idle_connections)
        for m, label in METRICS.items()
    }
    tables: dict[str, Any] = {}
    for workers in args.workers:
        rows = []
        table = []
        # Servers that held fewer idle connections than asked (HAProxy under a low fd limit).
        fewer = {
            s.server: s.notes["connections"]
            for s in samples
            if s.workers == workers
            and s.metric == "idle_rss"
            and s.notes["connections"] < args.idle_connections
        }
        for metric, label in labels.items():
            values = {n: median(samples, n, workers, metric) for n in names}
            if all(math.isnan(v) for v in values.values()):
                continue
            ref = values.get(REFERENCE, math.nan)
            ratios = {n: values[n] / ref if ref else math.nan for n in others}
            mark = {n: "*" if metric == "idle_rss" and n in fewer else "" for n in names}
            rows.append(
                [label]
                + [_fmt(values[n]) + mark[n] for n in names]
                + [_fmt(ratios[n]) + mark[n] for n in others]
            )
            table.append(
                {"metric": label, **values, **{f"{n}/{REFERENCE}": ratios[n] for n in others}}
            )
        header = ["metric", *names, *(f"{n}/{REFERENCE}" for n in others)]
        each = "one worker each" if workers == 1 else f"{workers} workers each"
        print_table(f"{each} (medians of {args.rounds} rounds)", header, rows)
        for n, held in fewer.items():
            print(f"  * {n} held {held} idle connections, not {args.idle_connections}")
        tables[f"workers_{workers}"] = table

    scaling: dict[str, float] = {}
    if 1 in args.workers and len(args.workers) > 1:
        top = max(args.workers)
        rows = []
        for n in names:
            scaling[n] = busiest_median(samples, n, 1) / busiest_median(samples, n, top)
        rps = {n: rps_median(samples, n, top) / rps_median(samples, n, 1) for n in names}
        label = f"scaling, {top} workers vs 1 (CPU-normalized, see below)"
        rows.append([label, *(_fmt(scaling[n]) for n in names)])
        label = f"requests/s under wrk, {top} workers vs 1 (shares cores with wrk)"
        rows.append([label, *(_fmt(rps[n]) for n in names)])
        print_table("worker scaling", ["metric", *names], rows)
        print(
            "  CPU-normalized scaling: requests per CPU-second of the busiest thread (the worker\n"
            "  that saturates its core first), with N workers over with 1; 2.0 is perfect."
        )
        tables["scaling"] = {"cpu_normalized": scaling, "requests_per_second": rps}

    hsm_values = [s for s in samples if s.metric == "hsm-pair"]
    if hsm_values:
        with_hsm = median(samples, "outwork-hsm", 1, "hsm-pair")
        with_file = median(samples, "outwork", 1, "hsm-pair")
        print_table(
            "HSM",
            ["metric", "outwork-hsm", "outwork", "ratio"],
            [[HSM_LABEL, _fmt(with_hsm), _fmt(with_file), _fmt(with_hsm / with_file)]],
        )
        tables["hsm"] = {"outwork-hsm": with_hsm, "outwork": with_file}

    if any(s.metric == "policy-pair" for s in samples):
        rows = []
        for metric in ("policy-pair", "policy-paced"):
            with_policy = median(samples, "outwork-policy", 1, metric)
            without = median(samples, "outwork", 1, metric)
            label = POLICY_LABEL
            if metric == "policy-paced":
                rate = statistics.median(
                    s.notes.get("requests_per_second", math.nan)
                    for s in samples
                    if s.metric == metric
                )
                label = POLICY_PACED_LABEL.format(rate=rate, delay=args.paced_delay)
            rows.append([label, _fmt(with_policy), _fmt(without), _fmt(with_policy / without)])
            tables[metric] = {"outwork-policy": with_policy, "outwork": without}
        print_table("security policy", ["metric", "outwork-policy", "outwork", "ratio"], rows)

    if "outwork" in names:
        tables["aims"] = print_aims(samples, args, scaling)
    return tables


def print_aims(
    samples: list[Sample], args: argparse.Namespace, scaling: dict[str, float]
) -> list[dict[str, Any]]:
    aims: list[dict[str, Any]] = []

    def verdict(name: str, value: float, holds: bool | None, detail: str) -> None:
        word = "not measured" if holds is None else ("HOLDS" if holds else "MISSED")
        aims.append({"aim": name, "value": value, "holds": holds})
        print(f"  {word:<12} {name}: {detail}")

    print("\naims (outwork)")
    if REFERENCE in args.servers:
        for workers in args.workers:
            ratio = median(samples, "outwork", workers, "keepalive") / median(
                samples, REFERENCE, workers, "keepalive"
            )
            verdict(
                f"keep-alive CPU per request within {AIM_KEEPALIVE_RATIO:g}x of nginx "
                f"({workers} worker{'s' if workers > 1 else ''})",
                ratio,
                None if math.isnan(ratio) else ratio <= AIM_KEEPALIVE_RATIO,
                f"{_fmt(ratio)}x",
            )
    if any(x.metric == "policy-pair" for x in samples):
        for metric, how in (("policy-pair", "at saturation"), ("policy-paced", "paced")):
            ratio = median(samples, "outwork-policy", 1, metric) / median(
                samples, "outwork", 1, metric
            )
            verdict(
                f"typical policy at most {AIM_POLICY_RATIO:g}x the CPU per request of none ({how})",
                ratio,
                None if math.isnan(ratio) else ratio <= AIM_POLICY_RATIO,
                f"{_fmt(ratio)}x",
            )
    s = scaling.get("outwork", math.nan)
    verdict(
        f"two workers at least {AIM_SCALING:g}x one worker (CPU-normalized)",
        s,
        None if math.isnan(s) else s >= AIM_SCALING,
        f"{_fmt(s)}x",
    )
    for workers in args.workers:
        rss = median(samples, "outwork", workers, "idle_rss")
        per = median(samples, "outwork", workers, "idle_kib")
        name = (
            f"{AIM_IDLE_CONNECTIONS:,} idle TLS connections under {AIM_IDLE_RSS_MIB} MiB total RSS "
            f"({workers} worker{'s' if workers > 1 else ''})"
        )
        if math.isnan(rss):
            verdict(name, rss, None, "-")
        elif args.idle_connections == AIM_IDLE_CONNECTIONS:
            verdict(name, rss, rss < AIM_IDLE_RSS_MIB, f"{rss:.1f} MiB")
        else:
            # Measured with fewer: project from the idle RSS and the cost per connection.
            idle = next(
                x.notes["idle_rss_mib"]
                for x in samples
                if x.server == "outwork" and x.workers == workers and x.metric == "idle_rss"
            )
            projected = idle + per * AIM_IDLE_CONNECTIONS / 1024
            verdict(
                name,
                projected,
                projected < AIM_IDLE_RSS_MIB,
                f"{projected:.1f} MiB projected from {args.idle_connections} connections",
            )
    return aims


def warnings(samples: list[Sample]) -> None:
    """Same request, same backend: the bytes per connection must be close to nginx's, or a
    server did not do the same work (an error page is cheaper than a proxied response)."""
    sizes: dict[str, set[int]] = {}
    for s in samples:
        if s.metric == "handshake":
            sizes.setdefault(s.server, set()).add(s.notes["bytes_per_connection"])
        if s.notes.get("non_2xx"):
            print(f"WARNING: {s.server}: {s.notes['non_2xx']} non-2xx answers under wrk")
        if s.metric == "resumed" and s.notes.get("resumed_fraction", 1.0) < 0.99:
            print(f"WARNING: {s.server}: only {s.notes['resumed_fraction']:.0%} resumed")
        if s.metric == "idle_rss" and s.notes["failed"]:
            print(
                f"WARNING: {s.server} ({s.workers} workers): {s.notes['failed']} idle "
                f"connections failed: {s.notes['errors']}"
            )
    reference = sizes.get(REFERENCE)
    if reference:
        for name, got in sizes.items():
            if max(abs(a - b) for a in got for b in reference) > 256:
                print(
                    f"WARNING: bytes read per new connection: {name} {sorted(got)}, "
                    f"{REFERENCE} {sorted(reference)}: the servers did not answer alike"
                )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one short round, 2,000 idle connections, no HSM, no resumption",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds of wrk per sample")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--handshake-time", type=int, default=4, help="seconds of s_time")
    parser.add_argument("--handshake-clients", type=int, default=3, help="parallel s_time")
    parser.add_argument("--download-mib", type=int, default=100, help="0: skip the download")
    parser.add_argument("--latency-rate", type=float, default=500, help="requests/s; 0: skip")
    parser.add_argument("--latency-time", type=float, default=4, help="seconds")
    parser.add_argument("--latency-connections", type=int, default=8)
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=AIM_IDLE_CONNECTIONS,
        help="0: skip the idle-connection memory figure",
    )
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1 or 1,2")
    parser.add_argument(
        "--servers",
        default="outwork,nginx,haproxy",
        help=f"from {','.join(KINDS)}; nginx (the reference) is always added; "
        "outwork,nginx,nginx-2 checks the harness (expect ratios near 1.0)",
    )
    parser.add_argument("--no-hsm", action="store_true", help="skip the HSM-key comparison")
    parser.add_argument(
        "--no-policy", action="store_true", help="skip the security-policy comparison"
    )
    parser.add_argument(
        "--paced-delay",
        type=float,
        default=4,
        help="ms each wrk connection waits between requests in the paced policy row",
    )
    parser.add_argument("--no-resumed", action="store_true", help="skip resumed handshakes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
        args.duration = args.handshake_time = 2
        args.latency_time = 2
        args.idle_connections = min(args.idle_connections, 2000)
        args.no_hsm = args.no_resumed = True
    args.workers = sorted({int(w) for w in args.workers.split(",")})
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in KINDS]
    if unknown or any(w < 1 for w in args.workers):
        parser.error(f"unknown servers {unknown} or bad --workers")
    args.servers = list(dict.fromkeys([*servers, REFERENCE]))
    return args


def main() -> int:
    args = parse_args()
    # The bench's own children (idle clients, s_time, wrk) inherit this.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="outwork-bench-"))
    backend: Server | None = None
    samples: list[Sample] = []
    try:
        tls = make_certificate(workdir)
        backend = start_nginx(
            "backend", workdir / "backend", tls=None, upstream=None, download_mib=args.download_mib
        )
        for workers in args.workers:
            samples += run_configuration(workers, args, workdir, tls, backend.port)
        tables = report(samples, args)
        warnings(samples)
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if backend is not None:
            backend.stop()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"(one run, {elapsed / 60:.1f} min; CPU from /proc over each server's process tree)")
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results / f"bench-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "tables": tables,
                "samples": [s.__dict__ for s in samples],
                "seconds": round(elapsed),
            },
            indent=2,
            default=str,
        )
    )
    print(f"raw figures: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
