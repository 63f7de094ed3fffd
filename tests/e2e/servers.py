"""Real processes for the e2e suite: the backend, the gateway under test, and nginx.

Everything binds 127.0.0.1 only. Each process writes its output to files in its own work
directory, so a full pipe can never stall it and a failing test can show what it said.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import require_tool

from .pki import Leaf

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no output file)"
    return text[-limit:] if text else "(empty)"


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not go; only this process (and its group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _spawn(argv: list[str], workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out = workdir / f"{name}.stdout"
    err = workdir / f"{name}.stderr"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            start_new_session=True,  # own process group: stop_process kills the whole tree
        )
    return proc, out, err


@dataclass
class Backend:
    port: int
    body: bytes
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.proc)


def start_backend(workdir: Path, body: str) -> Backend:
    workdir.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("backend_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), body],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=(workdir / "backend.stderr").open("wb"),
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("READY "):
        stop_process(proc)
        raise ServerStartError(
            f"backend did not start: {line!r} {_tail(workdir / 'backend.stderr')}"
        )
    return Backend(port=int(line.split()[1]), body=body.encode(), proc=proc)


@dataclass
class Gateway:
    """A TLS server under test: outwork (`kind="outwork"`) or nginx as a reference."""

    kind: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    events_path: Path | None  # outwork only
    leaf: Leaf
    heartbeat: bool
    admin_port: int | None = None  # outwork only
    access_log_path: Path | None = None  # outwork with `logging.access_log` only
    _stderr_mark: int = field(default=0)

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark_stderr(self) -> None:
        self._stderr_mark = len(self.stderr_text())

    def stderr_since_mark(self) -> str:
        return self.stderr_text()[self._stderr_mark :]

    def events(self) -> list[dict[str, object]]:
        if self.events_path is None or not self.events_path.exists():
            return []
        out = []
        for line in self.events_path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out

    def wait_for_event(
        self, predicate: Callable[[dict[str, object]], bool], timeout: float = 5.0
    ) -> dict[str, object] | None:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events():
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def access_log(self) -> list[dict[str, Any]]:
        """The access log's JSON lines so far (`logging.access_log`)."""
        if self.access_log_path is None:
            raise RuntimeError(f"{self.kind} on port {self.port} has no access log")
        if not self.access_log_path.exists():
            return []
        return [
            json.loads(line)
            for line in self.access_log_path.read_text(errors="replace").splitlines()
            if line.strip()
        ]

    def wait_for_access(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any] | None:
        """The first access-log entry that matches, waiting for the gateway to write it."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.access_log():
                if predicate(entry):
                    return entry
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def access_for(self, tag: str, timeout: float = 5.0) -> dict[str, Any]:
        """The access-log entry of the request tagged `tag` (clients.get_close); fails if none."""
        path = f"/cell/{tag}"
        entry = self.wait_for_access(lambda e: e.get("path") == path, timeout)
        if entry is None:
            raise AssertionError(
                f"no access-log entry for {path} in {self.access_log_path}:\n"
                + "\n".join(json.dumps(e) for e in self.access_log()[-5:])
            )
        return entry

    def metric(self, sample: str) -> float:
        """One sample from the admin /metrics page, e.g. 'x_total{event="y"}'; 0 if absent."""
        if self.admin_port is None:
            raise RuntimeError(f"{self.kind} has no admin endpoint")
        url = f"http://{HOST}:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return 0.0

    def stop(self) -> None:
        stop_process(self.proc)


def is_nginx_plain_http_answer(gw: Gateway, data: bytes) -> bool:
    """nginx answers bytes that do not start a TLS handshake with an HTTP 400 page in clear:
    its documented behaviour, not a harness fault, when the reference nginx is the target."""
    return gw.kind == "nginx" and data.startswith(b"HTTP/1.1 400 Bad Request")


def find_outwork() -> list[str]:
    """How to run `outwork`: $OUTWORK_BIN, the repo's .venv, or next to this interpreter."""
    env = os.environ.get("OUTWORK_BIN")
    candidates = [Path(env)] if env else []
    candidates += [REPO / ".venv" / "bin" / "outwork", Path(sys.executable).parent / "outwork"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return [str(c)]
    which = shutil.which("outwork")
    if which:
        return [which]
    raise ServerStartError(
        "no `outwork` executable: run `make install` (looked in $OUTWORK_BIN, "
        f"{REPO / '.venv/bin/outwork'}, next to {sys.executable}, $PATH)"
    )


def _wait_listening(gw: Gateway, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not gw.alive():
            raise ServerStartError(
                f"{gw.kind} exited with status {gw.proc.returncode} before listening on "
                f"{HOST}:{gw.port}\n--- stderr ---\n{_tail(gw.stderr_path)}"
            )
        if port_accepts(gw.port):
            return
        time.sleep(0.05)
    gw.stop()
    raise ServerStartError(
        f"{gw.kind} did not listen on {HOST}:{gw.port} within {timeout}s\n"
        f"--- stderr ---\n{_tail(gw.stderr_path)}"
    )


def outwork_config(port: int, admin_port: int, backend_port: int, heartbeat: bool) -> str:
    # Cert and key sit beside the config: the documented "relative to the config file" rule.
    return f"""\
listeners:
  - name: public
    bind: {HOST}:{port}
    tls:
      certificates: [{{cert: cert.pem, key: key.pem}}]
      heartbeat: {"true" if heartbeat else "false"}
routes:
  - match: {{path_prefix: /}}
    upstream: backend
upstreams:
  backend: {{targets: ["http://{HOST}:{backend_port}"]}}
logging: {{security_events: "events.jsonl"}}
admin: {{bind: {HOST}:{admin_port}}}
"""


def start_outwork(
    workdir: Path, leaf: Leaf, backend_port: int, heartbeat: bool, timeout: float = 20.0
) -> Gateway:
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(leaf.cert, workdir / "cert.pem")
    shutil.copyfile(leaf.key, workdir / "key.pem")
    (workdir / "key.pem").chmod(0o600)
    port, admin_port = free_port(), free_port()
    config = workdir / "outwork.yaml"
    config.write_text(outwork_config(port, admin_port, backend_port, heartbeat))
    # The loader resolves the events path relative to the config file or to the cwd; both
    # are `workdir`. An absolute path would do too, but this keeps the config portable.
    events = workdir / "events.jsonl"
    proc, _out, err = _spawn([*find_outwork(), "serve", "-c", str(config)], workdir, "outwork")
    gw = Gateway("outwork", port, workdir, proc, err, events, leaf, heartbeat, admin_port)
    _wait_listening(gw, timeout)
    return gw


def start_outwork_tls(
    workdir: Path,
    leaf: Leaf,
    backend_port: int,
    tls: Mapping[str, Any],
    *,
    top: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Gateway:
    """`outwork serve` with a listener whose `tls:` section is `tls` as given (the issue-3 keys,
    README "Configuration"), an access log (`access.jsonl`) and security events (`events.jsonl`)
    in `workdir`. `top` adds top-level keys (e.g. `pkcs11`), `env` the gateway's environment
    (e.g. SOFTHSM2_CONF). The config is written as JSON, which is YAML too. `leaf` is the
    certificate the tests expect by default (the first of `tls.certificates`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, admin_port = free_port(), free_port()
    config_data: dict[str, Any] = {
        "listeners": [{"name": "public", "bind": f"{HOST}:{port}", "tls": dict(tls)}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
        "upstreams": {"backend": {"targets": [f"http://{HOST}:{backend_port}"]}},
        "logging": {"security_events": "events.jsonl", "access_log": "access.jsonl"},
        "admin": {"bind": f"{HOST}:{admin_port}"},
        **(top or {}),
    }
    config = workdir / "outwork.yaml"
    config.write_text(json.dumps(config_data, indent=2) + "\n")
    out = workdir / "outwork.stdout"
    err = workdir / "outwork.stderr"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            [*find_outwork(), "serve", "-c", str(config)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
    gw = Gateway(
        "outwork",
        port,
        workdir,
        proc,
        err,
        workdir / "events.jsonl",
        leaf,
        bool(tls.get("heartbeat", False)),
        admin_port,
        access_log_path=workdir / "access.jsonl",
    )
    _wait_listening(gw, timeout)
    return gw


def nginx_config(
    prefix: Path, tls_port: int, leaf: Leaf | None, upstream_port: int | None, root: Path | None
) -> str:
    """nginx.conf for a 1-worker, foreground nginx: TLS 1.3 proxy, or plain static server."""
    temp = "\n".join(
        f"  {d}_temp_path {prefix / d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    if leaf is not None:
        listen = f"""listen {HOST}:{tls_port} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate {leaf.cert};
    ssl_certificate_key {leaf.key};"""
    else:
        listen = f"listen {HOST}:{tls_port};"
    if upstream_port is not None:
        location = """location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }"""
        upstream = f"upstream backend {{ server {HOST}:{upstream_port}; keepalive 16; }}"
    else:
        location = f"location / {{ root {root}; }}"
        upstream = ""
    return f"""\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}
  keepalive_requests 1000000;
  {upstream}
  server {{
    {listen}
    {location}
  }}
}}
"""


def start_nginx(
    workdir: Path,
    leaf: Leaf | None,
    upstream_port: int | None = None,
    root: Path | None = None,
    timeout: float = 10.0,
) -> Gateway:
    nginx = require_tool("nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(workdir, port, leaf, upstream_port, root))
    argv = [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    proc, _out, err = _spawn(argv, workdir, "nginx")
    gw = Gateway("nginx", port, workdir, proc, err, None, leaf, False)  # type: ignore[arg-type]
    _wait_listening(gw, timeout)
    return gw
