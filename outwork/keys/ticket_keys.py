"""Session-ticket keys shared by the worker processes of a node through one key file.

The file holds the key of the current rotation period and of the previous one (still
accepted, so tickets issued just before a rotation keep working), nothing older: a key that
is gone cannot decrypt recorded tickets (forward secrecy for resumed sessions). Whichever
worker first needs a period's key makes it, under a lock; the others read it. Rotation is by
the clock, so every worker agrees on the current period without talking to the others.

An incident drops keys early (`drop_before`): every worker is told the same time, and the
first one to take the lock rewrites the file without the keys made before it (each entry
records when it was made) and with a new current key; the others find that key and keep it,
so all of them end up with the same one.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path

from outwork.config.files import read_bounded

KEY_NAME_LENGTH = 16
KEY_LENGTH = 32
DEFAULT_PERIOD = 12 * 3600
# Two keys (the current period's and the previous one's) take about 300 bytes; the cap keeps
# a wrong path (a log file) from being read whole by every worker.
MAX_TICKET_KEY_FILE = 64 * 1024
RELOAD_INTERVAL = 1.0  # seconds between re-reads prompted by an unknown key name
# A period's key: (name, key, when it was made; 0 for files written before that was recorded).
_Entry = tuple[bytes, bytes, float]


class FileTicketKeys:
    def __init__(self, path: str | Path, period: float = DEFAULT_PERIOD) -> None:
        if period <= 0:
            raise ValueError("ticket key rotation period must be positive")
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._period = period
        self._keys: dict[int, _Entry] = {}
        self._synced_index: int | None = None
        self._last_read = float("-inf")

    def _index(self, now: float) -> int:
        return int(now // self._period)

    def encryption_key(self, now: float) -> tuple[bytes, bytes]:
        index = self._index(now)
        if index not in self._keys or self._synced_index != index:
            self._sync(index, now)
        name, key, _ = self._keys[index]
        return name, key

    def decryption_key(self, key_name: bytes, now: float) -> bytes | None:
        index = self._index(now)
        if self._synced_index != index:
            self._sync(index, now)
        found = self._find(key_name, index)
        if found is None and now - self._last_read > RELOAD_INTERVAL:
            self._sync(index, now)  # another worker may have made a key we have not seen
            found = self._find(key_name, index)
        return found

    def _find(self, key_name: bytes, index: int) -> bytes | None:
        for i in (index, index - 1):
            entry = self._keys.get(i)
            if entry is not None and secrets.compare_digest(entry[0], key_name):
                return entry[1]
        return None

    def drop_before(self, not_before: float, now: float) -> None:
        """Rewrite the file without the keys made before `not_before`, with a current key made
        since (by whichever worker gets there first), and use only that from now on."""
        self._sync(self._index(now), now, not_before)

    def _sync(self, index: int, now: float, not_before: float | None = None) -> None:
        """Read the file under the lock, add this period's key if missing, drop old ones (and,
        with `not_before`, those made before it)."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            keys = self._read()
            changed = False
            if not_before is not None:
                for early in [i for i, entry in keys.items() if entry[2] < not_before]:
                    del keys[early]
                    changed = True
            if index not in keys:
                keys[index] = (os.urandom(KEY_NAME_LENGTH), os.urandom(KEY_LENGTH), now)
                changed = True
            for old in [i for i in keys if i < index - 1]:
                del keys[old]
                changed = True
            if changed:
                self._write(keys)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._keys = keys
        self._synced_index = index
        self._last_read = now

    def _read(self) -> dict[int, _Entry]:
        try:
            data = json.loads(read_bounded(self._path, MAX_TICKET_KEY_FILE))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{self._path}: unreadable ticket key file: {exc}") from exc
        keys: dict[int, _Entry] = {}
        for entry in data.get("keys", []):
            name, key = bytes.fromhex(entry["name"]), bytes.fromhex(entry["key"])
            if len(name) != KEY_NAME_LENGTH or len(key) != KEY_LENGTH:
                raise RuntimeError(f"{self._path}: malformed ticket key entry")
            keys[int(entry["period"])] = (name, key, float(entry.get("created", 0)))
        return keys

    def _write(self, keys: dict[int, _Entry]) -> None:
        entries = [
            {"period": i, "name": name.hex(), "key": key.hex(), "created": created}
            for i, (name, key, created) in sorted(keys.items())
        ]
        temporary = self._path.with_name(self._path.name + f".{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"period_seconds": self._period, "keys": entries}, handle)
        os.replace(temporary, self._path)  # readers see the old file or the new, never half
