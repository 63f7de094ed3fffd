"""`make bench`: outwork next to nginx, same certificate, same backend, one worker each.

Measures, alternating the two servers for several rounds and taking medians:
- CPU µs per keep-alive HTTPS request: `wrk` with a few connections for a fixed time;
- CPU µs per new connection: a full TLS 1.3 handshake plus one GET, from several parallel
  `openssl s_time -new` clients (they never resume a session);
- CPU µs per resumed connection: a TLS 1.3 PSK handshake (psk_dhe_ke) plus one GET, from
  parallel `openssl s_time -reuse` clients (each resumes its first session's ticket; nginx
  with session tickets on, its default);
- CPU µs per new connection with the key in an HSM (SoftHSM2, ECDSA P-256, generated in a
  token made in the work directory) against the same with a key file: outwork against outwork.
CPU is the server's own accounting, /proc/PID/stat utime+stime summed over its whole process
tree, sampled before and after each load, divided by the requests or connections completed.
The backend is a second, plain-HTTP nginx serving a static 1 KiB file; its CPU is not counted.

Prints a table (metric, outwork, nginx, ratio outwork/nginx) and writes the raw figures as
JSON to bench/results/. Benchmarks are not tests: nothing here asserts a timing.
`--candidate nginx` measures nginx against itself, to check the harness.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = (b"outwork bench payload. " * 45)[:1023] + b"\n"  # 1 KiB


class BenchError(RuntimeError):
    pass


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """utime+stime of `root` and every descendant, plus what `root` reaped (cutime+cstime)."""
    tree = _children()
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17.
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
        stack.extend(tree.get(pid, []))
    return total / CLK_TCK


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    tls: bool = True

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def spawn(
    name: str, argv: list[str], workdir: Path, port: int, env: dict[str, str] | None = None
) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
    server = Server(name, port, proc, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"{name} exited with status {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise BenchError(f"{name} did not listen on {HOST}:{port}:\n{log.read_text()[-3000:]}")


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        raise BenchError("nginx is not installed (Debian package nginx-light; `make bench`)")
    return found


def start_nginx(
    name: str, workdir: Path, *, tls: tuple[Path, Path] | None, upstream: int | None
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = "\n".join(
        f"  {d}_temp_path {workdir / d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    if tls:
        listen = (
            f"listen {HOST}:{port} ssl;\n    ssl_protocols TLSv1.3;\n"
            f"    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};"
        )
    else:
        listen = f"listen {HOST}:{port};"
    if upstream:
        upstream_block = f"upstream backend {{ server {HOST}:{upstream}; keepalive 32; }}"
        location = (
            "location / { proxy_pass http://backend; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; }'
        )
    else:
        (workdir / "www").mkdir(exist_ok=True)
        (workdir / "www" / "index.html").write_bytes(BODY)
        upstream_block = ""
        location = f"location / {{ root {workdir / 'www'}; }}"
    conf = f"""\
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
master_process on;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}
  keepalive_requests 1000000;
  {upstream_block}
  server {{
    {listen}
    {location}
  }}
}}
"""
    (workdir / "nginx.conf").write_text(conf)
    argv = [nginx_binary(), "-p", str(workdir), "-c", str(workdir / "nginx.conf")]
    argv += ["-e", str(workdir / "error.log")]
    return spawn(name, argv, workdir, port)


def find_outwork() -> str:
    for candidate in (REPO / ".venv/bin/outwork", Path(sys.executable).parent / "outwork"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("outwork")
    if not found:
        raise BenchError("no `outwork` executable: run `make install` first")
    return found


def start_outwork(
    workdir: Path,
    tls: tuple[Path, Path | str],
    upstream: int,
    name: str = "outwork",
    env: dict[str, str] | None = None,
) -> Server:
    """outwork with one certificate; the key is a file or a `pkcs11:` URI (then `env` carries
    SOFTHSM2_CONF)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "outwork.yaml"
    pkcs11 = f"pkcs11: {{module: {SOFTHSM_MODULE}}}\n" if str(tls[1]).startswith("pkcs11:") else ""
    config.write_text(
        f"""\
listeners:
  - name: public
    bind: {HOST}:{port}
    tls:
      certificates: [{{cert: "{tls[0]}", key: "{tls[1]}"}}]
routes:
  - match: {{path_prefix: /}}
    upstream: backend
upstreams:
  backend: {{targets: ["http://{HOST}:{upstream}"]}}
logging: {{security_events: "{workdir / "events.jsonl"}"}}
admin: {{bind: {HOST}:{free_port()}}}
{pkcs11}"""
    )
    return spawn(name, [find_outwork(), "serve", "-c", str(config)], workdir, port, env)


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def make_hsm_key(workdir: Path) -> tuple[tuple[Path, str], dict[str, str]]:
    """A SoftHSM2 token in `workdir` with an ECDSA P-256 key generated inside it (sensitive,
    not extractable; tests/e2e/hsm_token.py, run in a child process), and a certificate for
    it from a throwaway CA. Returns ((cert, pkcs11 URI), environment for the server)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not shutil.which("softhsm2-util") or not Path(SOFTHSM_MODULE).is_file():
        raise BenchError("SoftHSM2 is not installed (Debian package softhsm2; `make bench`)")
    folder = workdir / "softhsm"
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    env = {"SOFTHSM2_CONF": str(conf)}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "e2e" / "hsm_token.py"), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    if done.returncode != 0:
        raise BenchError(f"cannot make the SoftHSM2 token:\n{done.stderr[-3000:]}")
    public = serialization.load_pem_public_key(json.loads(done.stdout)["api-ec"].encode())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")]))
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = folder / "hsm-cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pin = folder / "pin.txt"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    return (cert_path, f"pkcs11:token=outwork;object=api-ec?pin-source=file:{pin}"), env


def check_serves_body(server: Server) -> None:
    """One HTTPS GET, TLS 1.3, must return the backend's 1 KiB body: fail clearly if not."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        with socket.create_connection((HOST, server.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
    except (OSError, ssl.SSLError) as exc:
        raise BenchError(
            f"{server.name} on port {server.port} does not serve HTTPS (TLS 1.3): {exc!r}\n"
            f"--- {server.name} log ---\n{server.log.read_text(errors='replace')[-3000:]}"
        ) from exc
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(BODY):
        raise BenchError(f"{server.name} answered something else: {data[:300]!r}")


# --- load --------------------------------------------------------------------------------


@dataclass
class Sample:
    server: str
    metric: str
    cpu_seconds: float
    count: int
    wall_seconds: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def us_per_op(self) -> float:
        return self.cpu_seconds * 1e6 / self.count if self.count else float("nan")


def measure_keepalive(server: Server, duration: int, connections: int) -> Sample:
    wrk = shutil.which("wrk")
    if not wrk:
        raise BenchError("wrk is not installed (Debian package wrk; `make bench`)")
    before = tree_cpu_seconds(server.proc.pid)
    t0 = time.monotonic()
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{duration}s", f"https://{HOST}:{server.port}/"],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    wall = time.monotonic() - t0
    after = tree_cpu_seconds(server.proc.pid)
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise BenchError(f"cannot read wrk's output:\n{out}")
    notes: dict[str, Any] = {}
    if m2 := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        notes["non_2xx"] = int(m2.group(1))
    if m3 := re.search(r"Socket errors: (.*)", out):
        notes["socket_errors"] = m3.group(1).strip()
    if m4 := re.search(r"Requests/sec:\s+([\d.]+)", out):
        notes["requests_per_second"] = float(m4.group(1))
    return Sample(server.name, "keepalive", after - before, int(m.group(1)), wall, notes)


def measure_handshakes(server: Server, seconds: int, clients: int, reuse: bool = False) -> Sample:
    """Full handshakes (`s_time -new`) or, with `reuse`, resumed ones (`s_time -reuse`: each
    client makes one full handshake, then resumes with that session's ticket)."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise BenchError("openssl is not installed")
    # s_time sends "GET <www> HTTP/1.0\r\n\r\n": no Host header, which a proxy forwarding
    # HTTP/1.1 upstream must then invent. Put a Host line in, so both servers proxy the same
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
    notes: dict[str, Any] = {
        "bytes_per_connection": round(bytes_read / connections) if connections else 0,
        "connections_per_second": round(connections / wall, 1),
    }
    if reuse:
        notes["resumed_fraction"] = round(reused / marks, 3) if marks else 0.0
    metric = "resumed" if reuse else "handshake"
    return Sample(server.name, metric, after - before, connections, wall, notes)


# --- main --------------------------------------------------------------------------------


METRICS = {
    "keepalive": "CPU µs per keep-alive HTTPS request",
    "handshake": "CPU µs per new connection (TLS 1.3 handshake + GET)",
    "resumed": "CPU µs per resumed connection (TLS 1.3 PSK + GET)",
}
HSM_LABEL = "CPU µs per new connection, key in SoftHSM2 vs key file (P-256)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per sample")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections")
    parser.add_argument("--handshake-time", type=int, default=5, help="seconds of s_time")
    parser.add_argument("--handshake-clients", type=int, default=3, help="parallel s_time")
    parser.add_argument(
        "--candidate",
        choices=("outwork", "nginx"),
        default="outwork",
        help="what to compare with nginx (nginx: check the harness against itself)",
    )
    parser.add_argument(
        "--no-hsm", action="store_true", help="skip the HSM-key against file-key comparison"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="outwork-bench-"))
    servers: list[Server] = []
    try:
        tls = make_certificate(workdir)
        backend = start_nginx("backend", workdir / "backend", tls=None, upstream=None)
        servers.append(backend)
        reference = start_nginx("nginx", workdir / "nginx", tls=tls, upstream=backend.port)
        servers.append(reference)
        if args.candidate == "outwork":
            candidate = start_outwork(workdir / "outwork", tls, backend.port)
        else:
            candidate = start_nginx("nginx-2", workdir / "nginx-2", tls=tls, upstream=backend.port)
        servers.append(candidate)
        hsm: Server | None = None
        if args.candidate == "outwork" and not args.no_hsm:
            hsm_tls, hsm_env = make_hsm_key(workdir)
            hsm = start_outwork(
                workdir / "outwork-hsm", hsm_tls, backend.port, name="outwork-hsm", env=hsm_env
            )
            servers.append(hsm)
        for server in (reference, candidate, *([hsm] if hsm else [])):
            check_serves_body(server)

        samples: list[Sample] = []
        for r in range(args.rounds):
            order = (candidate, reference) if r % 2 == 0 else (reference, candidate)
            for server in order:
                ka = measure_keepalive(server, args.duration, args.connections)
                hs = measure_handshakes(server, args.handshake_time, args.handshake_clients)
                rs = measure_handshakes(
                    server, args.handshake_time, args.handshake_clients, reuse=True
                )
                samples += [ka, hs, rs]
                print(
                    f"round {r + 1}/{args.rounds} {server.name:>8}: "
                    f"{ka.us_per_op:8.1f} µs/request ({ka.count} requests, {ka.notes}), "
                    f"{hs.us_per_op:8.1f} µs/connection ({hs.count} connections, {hs.notes}), "
                    f"{rs.us_per_op:8.1f} µs/resumed ({rs.count} connections, {rs.notes})",
                    flush=True,
                )
                if server.proc.poll() is not None:
                    raise BenchError(f"{server.name} died during the run")
            if hsm is not None:
                # File key (the candidate, measured just above) against HSM key; the HSM
                # server's own turn alternates with a second file-key sample.
                pair = (hsm, candidate) if r % 2 == 0 else (candidate, hsm)
                for server in pair:
                    hs = measure_handshakes(server, args.handshake_time, args.handshake_clients)
                    hs.metric = "hsm-pair"
                    samples.append(hs)
                    print(
                        f"round {r + 1}/{args.rounds} {server.name:>11}: "
                        f"{hs.us_per_op:8.1f} µs/connection ({hs.count} connections, {hs.notes})",
                        flush=True,
                    )
                    if server.proc.poll() is not None:
                        raise BenchError(f"{server.name} died during the run")
        report(samples, candidate.name, reference.name, args, hsm.name if hsm else None)
        warn_if_answers_differ(samples, candidate.name, reference.name)
        return 0
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def warn_if_answers_differ(samples: list[Sample], candidate: str, reference: str) -> None:
    """Same request, same backend: the bytes per connection must match, or the two servers
    did not do the same work (an error page is cheaper than a proxied response)."""
    sizes = {
        name: {
            s.notes["bytes_per_connection"]
            for s in samples
            if s.server == name and s.metric == "handshake"
        }
        for name in (candidate, reference)
    }
    if sizes[candidate] != sizes[reference]:
        print(
            "WARNING: bytes read per new connection differ "
            f"({candidate} {sorted(sizes[candidate])}, {reference} {sorted(sizes[reference])}): "
            "the servers did not answer alike",
            file=sys.stderr,
        )
    for s in samples:
        if s.notes.get("non_2xx"):
            print(
                f"WARNING: {s.server}: {s.notes['non_2xx']} non-2xx answers under wrk",
                file=sys.stderr,
            )


def _median(samples: list[Sample], server: str, metric: str) -> float:
    values = [s.us_per_op for s in samples if s.server == server and s.metric == metric]
    return statistics.median(values) if values else float("nan")


def report(
    samples: list[Sample],
    candidate: str,
    reference: str,
    args: argparse.Namespace,
    hsm: str | None = None,
) -> None:
    rows = []
    for metric, label in METRICS.items():
        cand = _median(samples, candidate, metric)
        ref = _median(samples, reference, metric)
        rows.append((label, cand, ref, cand / ref if ref else float("nan")))
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'metric':<{width}}  {candidate:>10}  {reference:>10}  {'ratio':>6}")
    for label, cand, ref, ratio in rows:
        print(f"{label:<{width}}  {cand:>10.1f}  {ref:>10.1f}  {ratio:>6.2f}")
    hsm_row = None
    if hsm is not None:
        with_hsm = _median(samples, hsm, "hsm-pair")
        with_file = _median(samples, candidate, "hsm-pair")
        hsm_row = (HSM_LABEL, with_hsm, with_file, with_hsm / with_file)
        print()
        print(f"{'metric':<{len(HSM_LABEL)}}  {hsm:>11}  {candidate:>10}  {'ratio':>6}")
        print(f"{HSM_LABEL}  {with_hsm:>11.1f}  {with_file:>10.1f}  {hsm_row[3]:>6.2f}")
    print(f"(medians of {args.rounds} alternating rounds; one worker each; CPU from /proc)")
    resumed = [s.notes.get("resumed_fraction") for s in samples if s.metric == "resumed"]
    if any(f is not None and f < 0.99 for f in resumed):
        print(f"WARNING: not every -reuse connection resumed: {resumed}", file=sys.stderr)

    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results / f"bench-{stamp}.json"
    table = [{"metric": m, candidate: c, reference: r, "ratio": q} for m, c, r, q in rows]
    if hsm_row is not None and hsm is not None:
        table.append(
            {"metric": hsm_row[0], hsm: hsm_row[1], candidate: hsm_row[2], "ratio": hsm_row[3]}
        )
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "table": table,
                "samples": [{**s.__dict__, "us_per_op": s.us_per_op} for s in samples],
            },
            indent=2,
        )
    )
    print(f"raw figures: {out.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
