"""Files read with a size cap (outwork/config/files.py): at most one byte past the cap is read,
and a larger file is refused, never cut short."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from outwork.config.files import MAX_PEM_FILE, FileTooLarge, read_bounded
from outwork.keys.file_signer import load_certified_key, load_private_key
from outwork.keys.ticket_keys import MAX_TICKET_KEY_FILE, FileTicketKeys
from outwork.ops import OpsError
from outwork.ops.config_edit import MAX_CONFIG_BYTES, read_config


def test_a_file_at_the_cap_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    assert read_bounded(str(path), 1000) == b"x" * 100


def test_one_byte_past_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    with pytest.raises(FileTooLarge, match=f"^{path} is larger than 100 bytes$") as info:
        read_bounded(path, 100)
    assert info.value.limit == 100


def test_an_endless_file_costs_only_the_cap() -> None:
    with pytest.raises(FileTooLarge):
        read_bounded("/dev/zero", 4096)


def test_a_missing_file_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "nowhere", 10)


def test_a_directory_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        read_bounded(tmp_path, 10)


def _open_here(path: Path) -> bool:
    """Whether this process holds `path` open (its /proc fd table names it)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def test_a_fifo_is_waited_for_open_and_read_once_a_writer_comes(tmp_path: Path) -> None:
    """The read end is open while no writer has come: the wait for one is not inside the
    kernel's `open`, where a signal that landed just before it would go unseen until a writer
    came (serve stopped by SIGTERM while it waits for its config from a FIFO)."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(read_bounded(fifo, 100)), daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not _open_here(fifo):
        assert time.monotonic() < deadline, "the FIFO was never opened without a writer"
        time.sleep(0.01)
    time.sleep(0.3)  # a few of the reader's wait slices with no writer: not taken as EOF
    assert reader.is_alive()
    with open(fifo, "wb") as writer:
        writer.write(b"routes: []\n")
    reader.join(10)
    assert result == [b"routes: []\n"]


def test_the_incident_edit_refuses_a_config_over_its_cap(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(OpsError, match="too large to rewrite"):
        read_config(config)
    config.write_bytes(b"routes: []\n")
    assert read_config(config) == "routes: []\n"


def test_a_key_or_chain_over_the_cap_is_refused_by_name(tmp_path: Path) -> None:
    big = tmp_path / "big.pem"
    big.write_bytes(b"\n" * (MAX_PEM_FILE + 1))
    with pytest.raises(ValueError, match=f"^{big} is larger than {MAX_PEM_FILE} bytes$"):
        load_private_key(big)
    with pytest.raises(ValueError, match=f"^{big} is larger than {MAX_PEM_FILE} bytes$"):
        load_certified_key(big, big)


def test_a_ticket_key_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    path.write_bytes(b" " * (MAX_TICKET_KEY_FILE + 1))
    with pytest.raises(RuntimeError, match="unreadable ticket key file.*is larger than"):
        FileTicketKeys(path).encryption_key(1_800_000_000.0)
