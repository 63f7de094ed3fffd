"""Instructions per keep-alive HTTPS request of outwork, counted by valgrind (callgrind).

CPU time per request on a shared 2-core machine moves by 20-40% from one round to the next
(other processes, cache and scheduler effects), so a 5% change cannot be seen with `run.py`.
The number of user-space instructions the worker executes per request does not depend on the
machine's load: two runs of the same code agree within about 0.5%. It leaves out the kernel's
share (the system calls: about a quarter of the CPU time) and memory stalls, so it guides work on
the Python path; `run.py` still gives the figures against nginx.

How: outwork (one worker) runs under callgrind with instrumentation off during start-up; `wrk`
keeps a few TLS connections busy (the server is ~50x slower under valgrind); after `--warmup`
seconds (handshakes done, first-time work past) the counters are zeroed, after `--window` more
they are dumped; the requests answered in between come from outwork's /metrics.

    .venv/bin/python bench/instructions.py            # prints Ir per request
    .venv/bin/python bench/instructions.py --top 30   # and the costliest functions
    .venv/bin/python bench/instructions.py --new-connections   # Ir per new TLS 1.3 connection
    .venv/bin/python bench/instructions.py --post              # the policy row's JSON POSTs
    .venv/bin/python bench/instructions.py --post --policy     # the same with the typical policy

`--new-connections` counts a full TLS 1.3 handshake plus one GET, as `run.py`'s handshake row:
parallel `openssl s_time -new` clients (one fresh connection per request, never resumed), the
connections counted from outwork_connections_accepted_total. `--post` sends `run.py`'s policy
row request (a 1 KiB JSON POST with an API key) instead of a GET, `--policy` puts the row's
typical policy on every route: the two together against `--post` alone is issue 9's ratio in
instructions, TLS included.

Needs valgrind and wrk (Debian packages). Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from servers import (
    HOST,
    POLICY_SCRIPT,
    BenchError,
    check_serves_body,
    free_port,
    make_certificate,
    start_nginx,
    start_outwork,
)


def answered(admin_port: int, metric: str = "outwork_requests_total") -> float:
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{metric}(?:\{{.*\}})? (\S+)$", text, re.M)
    )


def load_command(
    args: argparse.Namespace, port: int, seconds: int, script: Path
) -> list[list[str]]:
    """The client processes that keep the gateway busy for `seconds`. `script`: where wrk's
    Lua script for `--post` is written."""
    if args.new_connections:
        # The same request as measure.measure_handshakes (a Host line; s_time's " HTTP/1.0"
        # swallowed by a trailing header).
        www = "/ HTTP/1.0\r\nHost: localhost\r\nX-Bench:"
        argv = [
            "openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", "-tls1_3",
            "-www", www, "-time", str(seconds),
        ]  # fmt: skip
        return [argv] * args.connections
    wrk = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "10s"]
    if args.post:
        script.write_text(POLICY_SCRIPT)
        wrk += ["-s", str(script)]
    return [[*wrk, f"https://{HOST}:{port}/"]]


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def last_dump(workdir: Path) -> tuple[Path, int]:
    """The newest callgrind dump in `workdir` and its total of instructions."""
    dumps = sorted(workdir.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise BenchError(f"no callgrind dump in {workdir}")
    total = re.search(r"^(?:summary|totals): (\d+)", dumps[-1].read_text(errors="replace"), re.M)
    if total is None:
        raise BenchError(f"no totals in {dumps[-1]}")
    return dumps[-1], int(total.group(1))


def print_costliest(dump: Path, per: float, top: int) -> None:
    """The `top` functions of a callgrind dump by their own instructions, each divided by `per`
    (requests, MiB)."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", str(dump)], capture_output=True, text=True
    ).stdout
    rows = [line for line in annotated.splitlines() if re.match(r"\s*[\d,]+ \(", line)]
    for line in rows[1 : top + 1]:
        count = int(line.split()[0].replace(",", ""))
        name = line.split(")", 1)[1].strip().split(" [")[0]
        print(f"{count / per:>12,.0f}  {name[-100:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=10, help="seconds before counting")
    parser.add_argument("--window", type=float, default=10, help="seconds counted")
    parser.add_argument("--top", type=int, default=0, help="print the N costliest functions")
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="a new TLS 1.3 connection per GET (openssl s_time -new) instead of keep-alive",
    )
    parser.add_argument(
        "--post", action="store_true", help="the policy row's 1 KiB JSON POSTs instead of GETs"
    )
    parser.add_argument(
        "--policy", action="store_true", help="with --post: the typical policy on every route"
    )
    parser.add_argument("--keep", help="copy the counted callgrind dump to this path")
    args = parser.parse_args()
    if args.policy and not args.post:
        parser.error("--policy measures the policy row's POSTs: add --post")
    for tool in ("valgrind", "callgrind_control", "openssl" if args.new_connections else "wrk"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (Debian packages valgrind, wrk)", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="outwork-instructions-"))
    out = workdir / "callgrind.out"
    backend = outwork = None
    try:
        tls = make_certificate(workdir)
        backend = start_nginx("backend", workdir / "backend", tls=None, upstream=None)
        admin_port = free_port()
        outwork = start_outwork(
            workdir / "outwork",
            tls,
            backend.port,
            wrapper=(
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
            ),
            admin_port=admin_port,
            policy=args.policy,
        )
        check_serves_body(outwork, policy=args.policy)
        pid = outwork.proc.pid  # valgrind runs the program in its own process
        control(pid, "-i", "on")
        seconds = int(args.warmup + args.window + 3)
        clients = [
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for argv in load_command(args, outwork.port, seconds, workdir / "post.lua")
        ]
        metric = (
            "outwork_connections_accepted_total"
            if args.new_connections
            else "outwork_requests_total"
        )
        time.sleep(args.warmup)
        before = answered(admin_port, metric)
        control(pid, "-z")
        time.sleep(args.window)
        control(pid, "-d")
        requests = answered(admin_port, metric) - before
        for client in clients:
            client.wait()
        if requests <= 0:
            raise BenchError("no request in the window")
        dump, ir = last_dump(workdir)
        if args.keep:
            shutil.copyfile(dump, args.keep)
        unit = "new connection + GET" if args.new_connections else "keep-alive request"
        if args.post:
            unit += ", JSON POST" + (" with the typical policy" if args.policy else "")
        print(f"{ir / requests:,.0f} instructions per {unit} ({requests:.0f} counted)")
        if args.top:
            print_costliest(dump, requests, args.top)
    except BenchError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in (outwork, backend):
            if server is not None:
                server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
