"""Signals while `outwork serve` starts: a SIGHUP before "ready" is a reload once ready (not a
death by the default action); a SIGTERM stops the start cleanly, without leaving a pid file."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import Backend, gateway_config


def _wait_for_reader(fifo: Path, proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """A write end of `fifo`, once the gateway has opened it to read its config."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody reads it yet
                raise
        assert proc.poll() is None, "the gateway exited before reading its config"
        assert time.monotonic() < deadline, "the gateway never read its config"
        time.sleep(0.01)


@contextmanager
def _feeding_once(fifo: Path, text: str) -> Iterator[None]:
    """Hand the config to the next reader of `fifo` (the reload)."""

    def feed() -> None:
        with open(fifo, "w") as writer:  # blocks until someone reads
            writer.write(text)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        if thread.is_alive():
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # wakes a blocked open
        thread.join(5)


def _wait_text(log: Path, text: str, proc: subprocess.Popen[bytes], count: int = 1) -> str:
    deadline = time.monotonic() + 20
    while True:
        content = log.read_text()
        if content.count(text) >= count:
            return content
        assert proc.poll() is None, f"gateway exited {proc.returncode}:\n{content}"
        assert time.monotonic() < deadline, content
        time.sleep(0.02)


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "outwork", "serve", "-c", str(config)],
            stderr=out,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: killpg reaches it and its workers
        )


def test_sighup_while_the_config_is_read_reloads_once_ready(
    tmp_path: Path, make_backend: Callable[..., Backend]
) -> None:
    backend = make_backend("a")
    fifo, log = tmp_path / "outwork.yaml", tmp_path / "outwork.stderr"
    os.mkfifo(fifo)  # the gateway blocks reading it: a SIGHUP surely lands before "ready"
    text = yaml.safe_dump(gateway_config(backend.url))
    proc = _serve(fifo, log)
    try:
        writer = _wait_for_reader(fifo, proc)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)  # the default action would have killed it by now
        assert proc.poll() is None, log.read_text()
        os.write(writer, text.encode())
        os.close(writer)
        _wait_text(log, "outwork: ready", proc)
        with _feeding_once(fifo, text):
            _wait_text(log, "outwork: reloaded", proc)  # the SIGHUP, applied once ready
        url = re.findall(r"outwork: listener public on (\S+)", log.read_text())[-1]
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert response.status == 200
        assert (tmp_path / "outwork.pid").read_text().strip() == str(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0
    assert not (tmp_path / "outwork.pid").exists()


@pytest.mark.parametrize("attempt", range(5))
def test_sigterm_while_the_config_is_read_stops_cleanly(tmp_path: Path, attempt: int) -> None:
    """The signal comes as soon as the gateway opens the FIFO: often before its read blocks,
    where it once waited for the writer (the read is taken in slices now). Five times: the old
    code hung in most of them."""
    fifo, log = tmp_path / "outwork.yaml", tmp_path / "outwork.stderr"
    os.mkfifo(fifo)
    proc = _serve(fifo, log)
    writer = _wait_for_reader(fifo, proc)
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(20) == 0, log.read_text()  # at once: the read of the config stops
    finally:
        os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "SIGTERM before ready: stopped" in log.read_text()
    assert "Traceback" not in log.read_text()
    assert not (tmp_path / "outwork.pid").exists()


def _workers_loading(supervisor: int) -> list[int]:
    """The supervisor's children whose SIGHUP is no longer caught (the worker's own set-up)."""
    try:
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    except OSError:
        return []
    found = []
    for child in children:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)  # type: ignore[union-attr]
        if not caught & (1 << (signal.SIGHUP - 1)):
            found.append(int(child))
    return found


@pytest.mark.parametrize("workers", [2])
def test_sighup_to_the_process_group_while_workers_start_kills_nobody(
    tmp_path: Path, make_backend: Callable[..., Backend], workers: int
) -> None:
    """A hang-up to the whole group (a closed terminal, `kill -HUP -PGID`) as the workers load
    the config: none dies, the supervisor reloads once ready."""
    backend = make_backend("a")
    config, log = tmp_path / "outwork.yaml", tmp_path / "outwork.stderr"
    settings = gateway_config(backend.url)
    # Many routes: each worker takes a moment to load them, a window to send the signal in.
    many = [{"match": {"path": f"/r{i}"}, "upstream": "backend"} for i in range(2000)]
    settings["routes"] = many + settings["routes"]
    config.write_text(yaml.safe_dump({**settings, "workers": workers}))
    proc = _serve(config, log)
    try:
        # A worker past its signal set-up (SIGHUP no longer the supervisor's handler: it loads
        # the config now), the gateway not ready yet.
        deadline = time.monotonic() + 30
        while not _workers_loading(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            if "outwork: ready" in log.read_text():
                pytest.skip("the workers were ready before the signal could be sent")
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGHUP)
        content = _wait_text(log, "outwork: reloaded", proc)
        assert "killed by signal" not in content
        assert (tmp_path / "outwork.pid").read_text().strip() == str(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(45)
    assert proc.returncode == 0
