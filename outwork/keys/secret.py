"""Secret references: `env:NAME` or `file:PATH`, never the secret itself.

A config file or a command line names where a secret lives (a key's passphrase), so that the
secret is not in the file, in `ps`, or in a shell history. The same syntax and reader serve the
config (`tls.certificates[].passphrase`) and the commands (`outwork keys generate --passphrase`).
Messages name the reference, never the secret.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from outwork.config.files import FileTooLarge, read_bounded

# A secret file holds a passphrase or a token: a few bytes. The cap keeps a mistake (the key
# itself named as its passphrase file) from being read whole.
MAX_SECRET_FILE = 4096
MAX_REFERENCE_LENGTH = 4096
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(ValueError):
    """A malformed reference, or a secret that cannot be read."""


@dataclass(frozen=True)
class SecretRef:
    source: str  # "env" or "file"
    name: str  # the variable's name or the file's path

    def display(self) -> str:
        return f"{self.source}:{self.name}"


def parse_secret_ref(text: str) -> SecretRef:
    """`env:NAME` or `file:PATH`; raises SecretError (and nothing else) otherwise."""
    if not isinstance(text, str):
        raise SecretError("a secret reference must be a string")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise SecretError(f"secret reference longer than {MAX_REFERENCE_LENGTH} characters")
    source, colon, name = text.partition(":")
    if not colon or source not in ("env", "file"):
        # Never echo the text: it may be the secret itself, pasted by mistake.
        raise SecretError("a secret reference is env:NAME or file:PATH (not the secret itself)")
    if source == "env" and not _ENV_NAME.fullmatch(name):
        raise SecretError("env: must be followed by an environment variable name")
    if source == "file" and (name == "" or "\x00" in name):
        raise SecretError("file: must be followed by a path")
    return SecretRef(source, name)


def read_secret(ref: SecretRef, base: Path | None = None) -> bytes:
    """The secret's bytes (one trailing newline removed from a file); a relative file path is
    taken from `base` (the config's folder), else from the working directory."""
    if ref.source == "env":
        value = os.environ.get(ref.name)
        if value is None:
            raise SecretError(f"{ref.display()}: the environment variable is not set")
        data = value.encode("utf-8")
    else:
        path = Path(ref.name)
        if base is not None:
            path = base / path
        try:
            data = read_bounded(path, MAX_SECRET_FILE)
        except OSError as exc:
            raise SecretError(f"{ref.display()}: cannot read {path}: {exc.strerror}") from None
        except FileTooLarge:
            raise SecretError(f"{ref.display()}: larger than {MAX_SECRET_FILE} bytes") from None
        data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise SecretError(f"{ref.display()}: the secret is empty")
    return data
