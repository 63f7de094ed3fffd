"""One process at a time opens a PKCS#11 token on this host: a lock shared by outwork's processes.

SoftHSM2 (file object store) rewrites the token's file at every C_Login (to clear
CKF_USER_PIN_COUNT_LOW), and a process that reads that file at the same moment (C_Initialize,
C_GetTokenInfo) gets CKR_GENERAL_ERROR or finds no token with that label. Two workers loading
their keys after the fork, a new generation of workers after a reload, or `outwork keys
generate` next to a running gateway hit it: a worker that cannot load its key does not start.

So opening a token (initialising the module, finding the token, logging in, finding the key and
its test signatures) and generating a key on it hold an exclusive `flock` on the module's
library file: every process that can use that module can read it, and no file is created
anywhere. It is held for milliseconds (seconds for an RSA key generation). Signing takes no lock:
it only reads key objects that exist, and must not wait for another process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

_lock = threading.RLock()  # the threads of one process: the flock is the process's
_held: dict[tuple[int, str], tuple[int, int]] = {}  # (pid, module) -> (fd, depth)


@contextlib.contextmanager
def token_lock(module_path: str) -> Iterator[None]:
    """Hold the host-wide lock for the PKCS#11 module at `module_path` (re-entrant within a
    process: loading a key inside a key generation does not wait for itself)."""
    with _lock:
        key = (os.getpid(), module_path)  # a forked child does not hold its parent's lock
        fd, depth = _held.get(key, (-1, 0))
        if depth == 0:
            try:
                fd = os.open(module_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1  # the module's own loading reports a missing file
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX)
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held.pop(key)
            if depth > 1:
                _held[key] = (fd, depth - 1)
            elif fd >= 0:
                os.close(fd)  # releases the flock
