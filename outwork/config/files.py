"""Reading a file whose size has a cap (a config, a CA bundle, a PIN, a CSR, a state file).

One more byte than the cap is read, never the whole file: a file that is too large (or that
grows while it is read, or /dev/zero named by mistake) costs the cap, not the memory it asks
for, and is refused rather than cut short.
"""

from __future__ import annotations

import os

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
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(path, limit)
    return data
