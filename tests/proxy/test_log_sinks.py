"""Log lines to files and FIFOs (outwork.observe.line_sink): a reader that is absent, slow or
stalled, or a full disk, never blocks the gateway; what waits is delivered whole and in order,
and what cannot be kept is counted."""

from __future__ import annotations

import http.client
import io
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from outwork.observe.line_sink import MAX_PENDING, PIPE_BUF, LineSink
from tests.conftest import Backend, Gateway, gateway_config


def fifo_sink(path: Path, lost: Counter[str], name: str) -> LineSink:
    """A sink on the FIFO at `path`, made if it is not there yet."""
    if not path.exists():
        os.mkfifo(path)
    return LineSink(str(path), io.BytesIO(), lost, name)


@contextmanager
def fifo_reader(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def read_lines(fd: int, count: int, flush: Callable[[], object] = lambda: None) -> list[bytes]:
    """Read from a FIFO until `count` lines came (or 10 s passed), calling `flush` between
    reads: the writer side of a test that has no ticker."""
    data = b""
    deadline = time.monotonic() + 10
    while data.count(b"\n") < count and time.monotonic() < deadline:
        flush()
        try:
            data += os.read(fd, 1 << 16)
        except BlockingIOError:
            time.sleep(0.01)
    return data.splitlines(keepends=True)


def line(tag: str, n: int, size: int) -> bytes:
    head = f"{tag} {n} ".encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


def test_a_fifo_without_a_reader_opens_at_once_and_keeps_lines_for_the_reader(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.fifo"
    lost: Counter[str] = Counter()
    sink = fifo_sink(path, lost, "events")  # a plain open waits here
    sent = [line("a", n, 100) for n in range(50)]
    for item in sent:
        assert sink.write(item)
    sink.flush()
    with fifo_reader(path) as fd:
        assert read_lines(fd, len(sent)) == sent
    sink.close()
    assert lost == Counter()


def test_a_stalled_reader_never_blocks_the_writer_and_what_does_not_fit_is_counted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "access.fifo"
    lost: Counter[str] = Counter()
    sink = fifo_sink(path, lost, "access")
    with fifo_reader(path) as fd:  # open, and not reading
        size = 1000
        kept = MAX_PENDING // size  # the pipe holds some more on top of this
        total = kept + 1000
        for n in range(total):
            sink.write(line("l", n, size))
            sink.flush()  # returns at once: the pipe is full and nobody reads
        assert lost["access"] > 0
        got = read_lines(fd, total - lost["access"], sink.flush)
    sink.close()
    assert len(got) == total - lost["access"] >= kept
    # Whole lines, in order, the first ones first: the lost ones are the newest.
    assert got == [line("l", n, size) for n in range(len(got))]


def test_lines_of_several_writers_on_one_fifo_never_interleave(tmp_path: Path) -> None:
    """Workers share a FIFO: each writes runs of whole lines of at most PIPE_BUF bytes, which
    the kernel writes whole."""
    path = tmp_path / "events.fifo"
    lost: Counter[str] = Counter()
    sinks = [fifo_sink(path, lost, "events") for _ in range(2)]
    sizes = [37, 512, 1500, PIPE_BUF // 2, PIPE_BUF - 1, 901]
    sent: list[bytes] = []
    with fifo_reader(path) as fd:
        for n in range(400):
            for tag, sink in zip("ab", sinks, strict=True):
                item = line(tag, n, sizes[n % len(sizes)])
                sent.append(item)
                sink.write(item)
            if n % 7 == 0:  # queue several lines, so that flushes cut runs at line ends
                for sink in sinks:
                    sink.flush()

        def flush_all() -> None:
            for sink in sinks:
                sink.flush()

        got = read_lines(fd, len(sent), flush_all)
    for sink in sinks:
        sink.close()
    assert sorted(got) == sorted(sent)
    for tag in "ab":
        assert [g for g in got if g.startswith(tag.encode())] == [
            s for s in sent if s.startswith(tag.encode())
        ]


def test_a_full_disk_loses_lines_counted_and_raises_nothing() -> None:
    lost: Counter[str] = Counter()
    sink = LineSink("/dev/full", io.BytesIO(), lost, "access")
    for n in range(3):
        sink.write(line("l", n, 80))
    sink.flush()
    sink.write(line("l", 3, 80))
    sink.close()
    assert lost == Counter({"access": 4})


def test_gateway_serves_while_its_log_fifos_have_no_reader_and_the_lines_wait(
    make_gateway: Callable[..., Gateway], backend: Backend, tmp_path: Path
) -> None:
    events, access = tmp_path / "events.fifo", tmp_path / "access.fifo"
    os.mkfifo(events)
    os.mkfifo(access)
    config = gateway_config(
        backend.url,
        logging={"security_events": str(events), "access_log": str(access)},
        policies={"closed": {"access": {"deny": ["127.0.0.0/8"]}}},
        routes=[{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["closed"]}],
    )
    gw = make_gateway(config)  # opening a FIFO with no reader used to wait forever here
    url = urlsplit(gw.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    requests = 600  # ~180 KB of access lines: more than a pipe holds
    for _ in range(requests):
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        assert response.status == 403
    conn.close()
    with fifo_reader(access) as fd:
        lines = read_lines(fd, requests)
    assert len(lines) == requests  # nothing lost: the rest waited in the gateway for the reader
    assert {json.loads(item)["status"] for item in lines} == {403}
    kind = {"event": "policy.access_denied"}
    assert gw.metric("outwork_security_events_total", **kind) == requests
    written = requests - gw.metric("outwork_security_events_dropped_total", **kind)
    assert written >= 100  # the event log's burst; the rest were rate-limited, and counted
    with fifo_reader(events) as fd:
        refused = [json.loads(item) for item in read_lines(fd, int(written))]
    assert len(refused) == written
    assert {event["event"] for event in refused} == {"policy.access_denied"}
    assert gw.metric("outwork_log_lines_lost_total", log="access") == 0
