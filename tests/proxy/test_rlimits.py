"""The gateway raises its own open-files soft limit to the hard limit, and says when it is low."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import Backend, gateway_config


def start_with_nofile(
    tmp_path: Path, config: dict[str, object], soft: int, hard: int
) -> tuple[subprocess.Popen[bytes], Path]:
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "outwork.stderr"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "outwork", "serve", "-c", str(path)],
            stderr=out,
            stdout=subprocess.DEVNULL,
            preexec_fn=limit,
        )
    deadline = time.monotonic() + 15
    while "outwork: ready" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return proc, log


def open_files_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else hard


@pytest.mark.parametrize("workers", [1, 2])
def test_soft_limit_is_raised_to_the_hard_limit(
    tmp_path: Path, make_backend: Callable[..., Backend], workers: int
) -> None:
    hard = hard_limit()
    if hard <= 1024:
        pytest.skip(f"the hard open-files limit here is {hard}: nothing to raise")
    backend = make_backend()
    proc, log = start_with_nofile(
        tmp_path, gateway_config(backend.url, workers=workers), 1024, hard
    )
    try:
        assert open_files_limits(proc.pid) == (hard, hard)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == (workers if workers > 1 else 0)
        for child in children:  # forked workers inherit the raised limit
            assert open_files_limits(int(child)) == (hard, hard)
    finally:
        stop(proc)
    low = hard < 16384
    assert ("open files limit is" in log.read_text()) is low


def test_a_low_hard_limit_is_logged(tmp_path: Path, make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    proc, log = start_with_nofile(tmp_path, gateway_config(backend.url), 512, 2048)
    try:
        assert open_files_limits(proc.pid) == (2048, 2048)
    finally:
        stop(proc)
    assert "outwork: open files limit is 2048 (hard limit 2048)" in log.read_text()
