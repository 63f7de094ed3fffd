"""Writing results: all or nothing, never over an existing file unless asked, and a private key
never readable by others, not even for a moment."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from outwork.ops import OpsError

PRIVATE = 0o600  # keys
PUBLIC = 0o644  # certificates and CSRs


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Checked before any work (a key generated for nothing on a token, a CA key made twice)."""
    if not overwrite and os.path.lexists(path):
        raise OpsError(f"{path}: already exists (use --force to replace it)")


def write_file(path: Path, data: bytes, mode: int, overwrite: bool = False) -> None:
    """Write `data` to `path` atomically with `mode`. The bytes go to a temporary file in the
    same folder, created with `mode` (O_EXCL: ours, not a planted link), then linked in place:
    `link` refuses an existing name (no race between a check and the write), `replace` with
    --force swaps it in one step. A reader sees no file or the whole file."""
    refuse_existing(path, overwrite)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OpsError(f"{path}: no such folder {folder}")
    temp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise OpsError(f"{path}: cannot write in {folder}: {exc.strerror}") from None
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away; never added any
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.close(fd)
        if overwrite:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise OpsError(f"{path}: already exists (use --force to replace it)") from None
    except OSError as exc:
        raise OpsError(f"{path}: cannot write: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    _sync_folder(folder)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
