"""The servers `run.py` measures, and the processes behind them: nginx (also the backend),
HAProxy and outwork, each with the bench's certificate; CPU and memory of a process tree."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
BODY = (b"outwork bench payload. " * 45)[:1023] + b"\n"  # 1 KiB
# Timeouts long enough for the idle connections to stay open while they are counted.
IDLE_TIMEOUT = 600


class BenchError(RuntimeError):
    pass


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


def tree_pids(root: int) -> list[int]:
    tree = _children()
    pids = []
    stack = [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(tree.get(pid, []))
    return pids


def _stat_fields(path: str) -> list[str]:
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17.
    return Path(path).read_text().rpartition(")")[2].split()


def tree_cpu_seconds(root: int) -> float:
    """utime+stime of `root` and every descendant, plus what `root` reaped (cutime+cstime)."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = _stat_fields(f"/proc/{pid}/stat")
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def thread_cpu_seconds(root: int) -> dict[tuple[int, int], float]:
    """utime+stime of every thread of every process in the tree, by (pid, tid)."""
    result: dict[tuple[int, int], float] = {}
    for pid in tree_pids(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                fields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
            except OSError:
                continue
            result[(pid, int(tid))] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return result


def busiest_thread_seconds(
    before: dict[tuple[int, int], float], after: dict[tuple[int, int], float]
) -> float:
    return max((cpu - before.get(key, 0.0) for key, cpu in after.items()), default=0.0)


def tree_memory_kib(root: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over the process tree. RSS counts pages that forked workers
    share with their parent once per process (what the aim is stated in); PSS splits them."""
    rss = pss = 0
    for pid in tree_pids(root):
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    workers: int = 1
    max_idle: int = 1 << 30  # idle connections it can hold (HAProxy: bounded by its fd limit)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def spawn(
    name: str,
    argv: list[str],
    workdir: Path,
    port: int,
    env: dict[str, str] | None = None,
    workers: int = 1,
    ready_text: str = "",
    start_seconds: float = 20,
) -> Server:
    """Start a server and wait until it accepts connections on `port` (and, with `ready_text`,
    until its log says so: outwork's supervisor reserves the port before its workers listen)."""
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
    server = Server(name, port, proc, log, workers)
    deadline = time.monotonic() + start_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"{name} exited with status {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        if ready_text and ready_text not in log.read_text(errors="replace"):
            time.sleep(0.05)
            continue
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise BenchError(f"{name} did not listen on {HOST}:{port}:\n{log.read_text()[-3000:]}")


def open_files_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


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
    name: str,
    workdir: Path,
    *,
    tls: tuple[Path, Path] | None,
    upstream: int | None,
    workers: int = 1,
    connections: int = 4096,
    download_mib: int = 0,
) -> Server:
    """A TLS reverse proxy in front of `upstream`, or (no `upstream`) the plain-HTTP backend
    serving the 1 KiB body at / and `download_mib` MiB at /big."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = "\n".join(
        f"  {d}_temp_path {workdir / d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # Several workers: one listening socket each (SO_REUSEPORT), as outwork's workers have;
    # without it the kernel wakes every worker for each connection and one takes most of them.
    reuseport = " reuseport" if workers > 1 else ""
    if tls:
        listen = (
            f"listen {HOST}:{port} ssl{reuseport};\n    ssl_protocols TLSv1.3;\n"
            f"    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};"
        )
    else:
        listen = f"listen {HOST}:{port};"
    if upstream:
        upstream_block = f"upstream backend {{ server {HOST}:{upstream}; keepalive 32; }}"
        # Stream a large response instead of spilling it to a temporary file on disk.
        location = (
            "location / { proxy_pass http://backend; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; proxy_max_temp_file_size 0; }'
        )
    else:
        www = workdir / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_bytes(BODY)
        if download_mib:
            block = bytes(range(256)) * 4096  # 1 MiB
            with (www / "big").open("wb") as out:
                for _ in range(download_mib):
                    out.write(block)
        upstream_block = ""
        # /api takes the policy row's JSON POSTs (a static location answers POST with 405).
        location = f"location / {{ root {www}; }}\n    location = /api {{ return 200 OK; }}"
    conf = f"""\
{"user root;" if os.geteuid() == 0 else ""}
worker_processes {workers};
worker_rlimit_nofile {min(2 * connections + 1024, open_files_hard_limit())};
daemon off;
master_process on;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
{temp}
  keepalive_requests 1000000;
  keepalive_timeout {IDLE_TIMEOUT}s;
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
    return spawn(name, argv, workdir, port, workers=workers)


def start_haproxy(
    name: str,
    workdir: Path,
    tls: tuple[Path, Path],
    upstream: int,
    threads: int = 1,
    connections: int = 4096,
) -> Server:
    """HAProxy terminating TLS 1.3 with the same certificate and key, one process with
    `threads` threads (`nbthread`), keep-alive to the same backend."""
    binary = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else ""
    )
    if not binary:
        raise BenchError("haproxy is not installed (Debian package haproxy; `make bench`)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    pem = workdir / "cert-and-key.pem"  # HAProxy wants both in one file
    pem.write_bytes(tls[0].read_bytes() + tls[1].read_bytes())
    pem.chmod(0o600)
    # HAProxy refuses to start unless 2 x maxconn (+ a few) descriptors fit under its limit,
    # and it cannot go past the hard limit: without CAP_SYS_RESOURCE a hard limit of 20,000
    # caps it near 9,990 connections. Then it is asked to hold fewer idle connections.
    maxconn = min(connections + 1024, (open_files_hard_limit() - 64) // 2)
    conf = f"""\
global
  nbthread {threads}
  maxconn {maxconn}
  pidfile {workdir / "haproxy.pid"}

defaults
  mode http
  maxconn {maxconn}
  timeout connect 5s
  timeout client {IDLE_TIMEOUT}s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive {IDLE_TIMEOUT}s

frontend public
  bind {HOST}:{port} ssl crt {pem} ssl-min-ver TLSv1.3 alpn http/1.1
  default_backend backend

backend backend
  http-reuse safe
  server b1 {HOST}:{upstream}
"""
    (workdir / "haproxy.cfg").write_text(conf)
    server = spawn(
        name, [binary, "-db", "-f", str(workdir / "haproxy.cfg")], workdir, port, workers=threads
    )
    server.max_idle = maxconn - 100  # room for wrk, s_time and the backend connections
    return server


def find_outwork() -> str:
    for candidate in (REPO / ".venv/bin/outwork", Path(sys.executable).parent / "outwork"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("outwork")
    if not found:
        raise BenchError("no `outwork` executable: run `make install` first")
    return found


def _outwork_limits(connections: int) -> tuple[str, str]:
    """Extra listener keys and `limits:` keys that lift outwork's per-connection caps to the
    bench's needs, for the keys this version of the schema has (all connections come from one
    address; wrk's keep-alive connections must never be told to close)."""
    from outwork.config.schema import LimitsSpec, ListenerSpec

    wanted_listener = {
        "max_connections": connections + 1024,
        "max_connections_per_ip": connections + 1024,
    }
    wanted_limits = {
        "idle_timeout": IDLE_TIMEOUT,
        "max_requests_per_connection": 10_000_000,
    }
    listener = "".join(
        f"\n    {k}: {v}" for k, v in wanted_listener.items() if k in ListenerSpec.__struct_fields__
    )
    limits = ", ".join(
        f"{k}: {v}" for k, v in wanted_limits.items() if k in LimitsSpec.__struct_fields__
    )
    return listener, f"limits: {{{limits}}}\n"


def start_outwork(
    workdir: Path,
    tls: tuple[Path, Path | str],
    upstream: int,
    name: str = "outwork",
    env: dict[str, str] | None = None,
    workers: int = 1,
    connections: int = 4096,
    policy: bool = False,
    wrapper: tuple[str, ...] = (),
    admin_port: int = 0,
) -> Server:
    """outwork with one certificate; the key is a file or a `pkcs11:` URI (then `env` carries
    SOFTHSM2_CONF). `policy`: every route gets TYPICAL_POLICY. `wrapper`: a command that runs
    outwork (valgrind, for bench/instructions.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "outwork.yaml"
    pkcs11 = f"pkcs11: {{module: {SOFTHSM_MODULE}}}\n" if str(tls[1]).startswith("pkcs11:") else ""
    listener_extra, limits = _outwork_limits(connections)
    config.write_text(
        f"""\
listeners:
  - name: public
    bind: {HOST}:{port}
    tls:
      certificates: [{{cert: "{tls[0]}", key: "{tls[1]}"}}]{listener_extra}
routes:
  - match: {{path_prefix: /}}
    upstream: backend
upstreams:
  backend: {{targets: ["http://{HOST}:{upstream}"]}}
logging: {{security_events: "{workdir / "events.jsonl"}"}}
admin: {{bind: {HOST}:{admin_port or free_port()}}}
workers: {workers}
{limits}{pkcs11}{TYPICAL_POLICY if policy else ""}"""
    )
    return spawn(
        name,
        [*wrapper, find_outwork(), "serve", "-c", str(config)],
        workdir,
        port,
        env,
        workers=workers,
        ready_text="outwork: ready",
        start_seconds=180 if wrapper else 20,  # valgrind runs it tens of times slower
    )


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

# The policy row: what a typical API route carries (issue 9): an API key, one local rate limit
# (far above the load: it counts every request but refuses none), JSON threat protection on the
# body and security headers. POLICY_SCRIPT has wrk send what it asks for: a 1 KiB JSON POST
# with the key.
API_KEY = "bench-key-0123456789abcdef"
_KEY_HASH = hashlib.sha256(API_KEY.encode()).hexdigest()
TYPICAL_POLICY = f"""\
policies:
  typical:
    authenticate:
      - api_key: {{header: X-API-Key, keys: [{{id: bench, hash: "sha256:{_KEY_HASH}"}}]}}
    rate_limit:
      - {{key: client_address, rate: 1000000/s, burst: 1000000}}
    threat_protection:
      json: {{max_depth: 20, max_keys: 1000, max_string: 65536, max_array: 10000}}
    headers:
      remove: [Server, X-Powered-By]
      add: {{Strict-Transport-Security: "max-age=31536000", X-Content-Type-Options: nosniff}}
default_policies: [typical]
"""
# 1 KiB of JSON: nested objects, an array of 12 objects, strings and numbers.
POLICY_BODY = json.dumps(
    {
        "order": 4711,
        "customer": {"id": "c-20931", "name": "Ada Lovelace", "tier": "gold"},
        "items": [{"sku": f"SKU-{i:04d}", "qty": i % 5 + 1, "price": 9.99 + i} for i in range(12)],
        "note": "x" * 370,
    },
    separators=(",", ":"),
)
POLICY_SCRIPT = f"""\
wrk.method = "POST"
wrk.path = "/api"
wrk.body = {json.dumps(POLICY_BODY)}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "{API_KEY}"
"""


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


def check_serves_body(server: Server, policy: bool = False) -> None:
    """One HTTPS GET, TLS 1.3, must return the backend's 1 KiB body: fail clearly if not.
    `policy`: the policy row's POST must pass the policy (200), and a GET without the API key
    must not (401): the policy is on and lets the measured requests through."""
    if policy:
        _check_answer(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n", b"HTTP/1.1 401", b"")
        request = (
            b"POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"X-API-Key: %s\r\nContent-Length: %d\r\n" % (API_KEY.encode(), len(POLICY_BODY))
        )
        _check_answer(server, request, b"HTTP/1.1 200", b"OK", POLICY_BODY.encode())
        return
    _check_answer(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n", b"HTTP/1.1 200", BODY)


def _check_answer(
    server: Server, head: bytes, status: bytes, body: bytes, sent: bytes = b""
) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        with socket.create_connection((HOST, server.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(head + b"Connection: close\r\n\r\n" + sent)
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
    except (OSError, ssl.SSLError) as exc:
        raise BenchError(
            f"{server.name} on port {server.port} does not serve HTTPS (TLS 1.3): {exc!r}\n"
            f"--- {server.name} log ---\n{server.log.read_text(errors='replace')[-3000:]}"
        ) from exc
    if not data.startswith(status) or not data.endswith(body):
        raise BenchError(f"{server.name} answered something else: {data[:300]!r}")
