"""Reading a file whose size has a cap (a config, a CA bundle, a PIN, a CSR, a state file).

One more byte than the cap is read, never the whole file: a file that is too large (or that
grows while it is read, or /dev/zero named by mistake) costs the cap, not the memory it asks
for, and is refused rather than cut short.
"""

from __future__ import annotations

import io
import os
import select
import stat

StrPath = str | os.PathLike[str]
# A private key or a certificate chain named by the config: a few KiB each (a chain of ten RSA
# 4096 certificates is about 20 KiB).
MAX_PEM_FILE = 1024 * 1024


class FileTooLarge(ValueError):
    def __init__(self, path: StrPath, limit: int) -> None:
        super().__init__(f"{os.fspath(path)} is larger than {limit} bytes")
        self.path = path
        self.limit = limit


def read_bounded(path: StrPath, limit: int) -> bytes:
    """The bytes of `path`, at most `limit` of them. Raises OSError as `open` does, and
    FileTooLarge for a larger file."""
    # Opened non-blocking: a FIFO's read end opened the usual way waits in the kernel for a
    # writer, and a signal that lands just before that open is not seen until one comes. This
    # open returns at once; the wait for a writer is in `_read`'s slices, between which
    # signal handlers run.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        handle = open(fd, "rb", buffering=0)  # refuses a directory as `open(path)` does
    except BaseException:
        os.close(fd)
        raise
    with handle:
        stream = not stat.S_ISREG(os.fstat(fd).st_mode)
        data = _read(handle, limit + 1, stream)
    if len(data) > limit:
        raise FileTooLarge(path, limit)
    return data


# How long a read from a pipe or FIFO blocks before the interpreter looks at its signals.
SIGNAL_SLICE = 0.1


def _read(handle: io.RawIOBase, size: int, stream: bool) -> bytes:
    """Up to `size` bytes. A `stream` (a pipe, a FIFO, a device) is waited for in slices: a
    signal that lands after the interpreter last looked and before a blocking read starts does
    not interrupt that read, so its Python handler (SIGTERM while `serve` reads its config from
    a FIFO: stop) would wait for the writer; between slices it runs. A FIFO no writer has
    opened yet is not readable to `select` (no EOF before a first writer), so this waits for
    one."""
    chunks: list[bytes] = []
    while size > 0:
        if stream and not select.select([handle], [], [], SIGNAL_SLICE)[0]:
            continue
        chunk = handle.read(size)
        if chunk is None:  # nothing yet (the file is non-blocking): wait again
            continue
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
