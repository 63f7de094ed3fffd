"""The bulk path alone: one large download over TLS through outwork, counted three ways.

`run.py`'s download row is one curl per round on a shared machine: its MB/s moves with the
load. This measures what the server does per MiB instead:

    .venv/bin/python bench/download.py                    # CPU ms per MiB (and MB/s), 5 runs
    .venv/bin/python bench/download.py --callgrind        # user-space instructions per MiB
    .venv/bin/python bench/download.py --perf 25          # + the 25 hottest symbols (perf)
    .venv/bin/python bench/download.py --src DIR ...      # another checkout's outwork/ (before)

`--src` runs the `outwork` package found in DIR (PYTHONPATH), so two versions can be measured
alternately with the same venv. Under callgrind the counters are zeroed after one warm-up
download (handshake, first-time work) and dumped after the measured ones. The HTTP/2 path is
measured with `--http2` (curl then speaks h2 to outwork). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instructions import last_dump, print_costliest
from servers import HOST, BenchError, make_certificate, start_nginx, start_outwork, tree_cpu_seconds

MIB = 1024 * 1024


def download(port: int, mib: int, http2: bool) -> float:
    """One download of /big; returns curl's time_total. Raises BenchError unless it is whole."""
    version = "--http2" if http2 else "--http1.1"
    done = subprocess.run(
        [
            "curl", "-sS", "-k", "--tlsv1.3", version, "-o", "/dev/null",
            "-w", "%{http_code} %{size_download} %{time_total}",
            f"https://{HOST}:{port}/big",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )  # fmt: skip
    try:
        status, size, seconds = done.stdout.split()
    except ValueError:
        raise BenchError(f"curl failed: {done.stderr or done.stdout}") from None
    if status != "200" or int(size) != mib * MIB:
        raise BenchError(f"the download gave status {status}, {size} bytes")
    return float(seconds)


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=100, help="size of the download")
    parser.add_argument("--runs", type=int, default=5, help="downloads measured")
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--top", type=int, default=0, help="callgrind: the N costliest functions")
    parser.add_argument("--perf", type=int, default=0, help="perf: the N hottest symbols")
    parser.add_argument("--src", type=Path, help="a checkout whose outwork/ package runs")
    parser.add_argument("--http2", action="store_true", help="curl speaks HTTP/2")
    parser.add_argument("--wrapper", default="", help='runs outwork, e.g. "strace -c -f -o F"')
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="outwork-download-"))
    out = workdir / "callgrind.out"
    env = {"PYTHONPATH": str(args.src.resolve())} if args.src else None
    wrapper: tuple[str, ...] = tuple(args.wrapper.split())
    if args.callgrind:
        wrapper = ("valgrind", "--tool=callgrind", "--instr-atstart=no")
        wrapper += (f"--callgrind-out-file={out}",)
    backend = outwork = None
    try:
        tls = make_certificate(workdir)
        backend = start_nginx(
            "backend", workdir / "backend", tls=None, upstream=None, download_mib=args.mib
        )
        outwork = start_outwork(workdir / "outwork", tls, backend.port, env=env, wrapper=wrapper)
        pid = outwork.proc.pid
        if args.callgrind:
            callgrind(pid, "-i", "on")
        download(outwork.port, args.mib, args.http2)  # warm-up
        perf = None
        if args.perf:
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-F", "2000", "-p", str(pid),
                 "-o", str(workdir / "perf.data")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
        if args.callgrind:
            callgrind(pid, "-z")
        rows = []
        for _ in range(args.runs):
            before = tree_cpu_seconds(pid)
            seconds = download(outwork.port, args.mib, args.http2)
            cpu = tree_cpu_seconds(pid) - before
            rows.append((cpu * 1e3 / args.mib, args.mib * MIB / 1e6 / seconds))
            print(f"cpu {rows[-1][0]:7.2f} ms/MiB   {rows[-1][1]:8.1f} MB/s", flush=True)
        cpus = sorted(r[0] for r in rows)
        rates = sorted(r[1] for r in rows)
        print(f"median: cpu {cpus[len(cpus) // 2]:.2f} ms/MiB, {rates[len(rates) // 2]:.1f} MB/s")
        if perf is not None:
            perf.send_signal(2)
            perf.wait(30)
            report = subprocess.run(
                ["perf", "report", "-i", str(workdir / "perf.data"), "--stdio", "--no-children",
                 "--sort", "dso,symbol", "--percent-limit", "0.3"],
                capture_output=True,
                text=True,
            ).stdout  # fmt: skip
            lines = [line for line in report.splitlines() if line.strip() and line[0] != "#"]
            print("\n".join(lines[: args.perf]))
        if args.callgrind:
            callgrind(pid, "-d")
            dump, total = last_dump(workdir)
            mib = args.mib * args.runs
            print(f"{total / mib:,.0f} instructions per MiB ({mib} MiB)")
            if args.top:
                print_costliest(dump, mib, args.top)
    except BenchError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in (outwork, backend):
            if server is not None:
                server.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
