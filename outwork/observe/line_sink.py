"""Where the gateway's log lines go: a file, a FIFO, or stdout/stderr, written without ever
blocking the event loop.

The reader of a log can be slow, stopped, or not started yet (a log shipper on a FIFO), and a
disk can fill. None of that may stop or stall the gateway, which serves every connection from
one thread:
- a path is opened non-blocking; a FIFO is opened for reading and writing, which on Linux
  neither waits for a reader nor fails without one: lines wait in the pipe until one comes;
- lines the reader has not taken yet wait in memory, up to MAX_PENDING bytes; past that, new
  lines are dropped whole and counted, as are lines a failed write loses (a full disk);
- on a pipe, lines are written in runs of at most PIPE_BUF bytes that end at a line's end, which
  the kernel writes whole or not at all: several workers sharing one FIFO never interleave
  parts of their lines.
`-` names stdout or stderr as the process has them: written through, as before.
"""

from __future__ import annotations

import os
import select
import stat
import time
from collections import Counter
from typing import IO, Final

MAX_PENDING: Final = 4 * 1024 * 1024
# What a pipe writes whole (POSIX guarantees at least 512; Linux has 4096).
PIPE_BUF: Final = select.PIPE_BUF
# How long close() waits for a slow reader to take what is left, so that a last line (the
# reload audit of `outwork check`, the lines of a stopping gateway) is not lost to a brief stall.
CLOSE_WAIT_SECONDS: Final = 1.0


def open_for_append(path: str) -> int:
    """A descriptor that appends to `path` and never blocks, creating a file if none is there."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            # Write-only, a non-blocking open fails (ENXIO) while no reader has the FIFO open,
            # and a blocking one waits for one: read-write does neither (Linux, fifo(7)).
            flags = os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC
    except FileNotFoundError:
        pass
    return os.open(path, flags, 0o640)


class LineSink:
    """Lines (each ending in a newline) queued by `write` and written out by `flush`."""

    def __init__(self, target: str, stream: IO[bytes], lost: Counter[str], name: str) -> None:
        """`target` is a path, or `-` for `stream`. Lines lost are added to `lost[name]`."""
        self._lost = lost
        self._name = name
        self._stream: IO[bytes] | None = stream if target == "-" else None
        self._fd = -1 if self._stream is not None else open_for_append(target)
        self._pipe = self._fd >= 0 and stat.S_ISFIFO(os.fstat(self._fd).st_mode)
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        """Bytes queued and not yet taken by the reader."""
        return len(self._pending)

    def write(self, line: bytes) -> bool:
        """Queue one line; False (and counted as lost) when the queue has no room for it."""
        if len(self._pending) + len(line) > MAX_PENDING:
            self._lost[self._name] += 1
            return False
        self._pending += line
        return True

    def flush(self) -> int:
        """Write what is queued, as much as the reader takes now; the rest waits. Returns the
        bytes still waiting."""
        pending = self._pending
        if not pending:
            return 0
        if self._stream is not None:
            self._write_stream(self._stream)
            return 0
        try:
            while pending:
                end = len(pending)
                if self._pipe and end > PIPE_BUF:
                    cut = pending.rfind(b"\n", 0, PIPE_BUF)
                    # A line longer than PIPE_BUF goes as it is: the kernel may split it.
                    end = cut + 1 if cut >= 0 else pending.find(b"\n") + 1 or end
                written = os.write(self._fd, memoryview(pending)[:end])
                del pending[:written]
        except BlockingIOError:
            pass  # the reader is behind: the rest waits for the next flush
        except OSError:
            self._drop_pending()
        return len(pending)

    def close(self, wait: float = CLOSE_WAIT_SECONDS) -> None:
        """Flush, giving a slow reader up to `wait` seconds (blocking: in an event loop, wait
        for `flush()` to return 0 first), and close what this sink opened."""
        deadline = time.monotonic() + wait
        self.flush()
        while self._pending and self._fd >= 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([], [self._fd], [], left)
            self.flush()
        self._drop_pending()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_stream(self, stream: IO[bytes]) -> None:
        try:
            stream.write(self._pending)
            stream.flush()
            self._pending.clear()
        except (OSError, ValueError):
            self._drop_pending()  # a closed stdout, or a full disk behind it

    def _drop_pending(self) -> None:
        if self._pending:
            self._lost[self._name] += self._pending.count(b"\n")
            self._pending.clear()
