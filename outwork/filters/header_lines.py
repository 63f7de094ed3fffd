"""Removing header lines from a serialized head (`RequestHead.block`, `ResponseHead.block`),
compiled once per config: `authenticate` takes the credential and identity headers out of
what goes upstream, `headers` takes `Server` and the like out of what goes to the client."""

from __future__ import annotations

import re


class LineRemoval:
    """Removing the header lines named in `names` (lower case) from a serialized block (lines
    ending in CRLF, as `RequestHead.block` and `ResponseHead.block`), compiled once per
    config: one regex pass instead of splitting and lower-casing every line per request. A
    line goes when its name, any case, with blanks around it, is one of `names`."""

    __slots__ = ("names", "_lines")

    def __init__(self, names: frozenset[bytes]) -> None:
        self.names = names
        alternatives = b"|".join(re.escape(name) for name in sorted(names)) or b"(?!)"
        self._lines = re.compile(
            rb"(?im)^[ \t\x0b\x0c]*(?:%s)[ \t\x0b\x0c]*:[^\r\n]*(?:\r\n|\Z)" % alternatives
        )

    def block(self, block: bytes) -> bytes:
        return self._lines.sub(b"", block)
