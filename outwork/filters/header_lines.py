"""Removing header lines from a serialized head (`RequestHead.block`, `ResponseHead.block`),
compiled once per config: `authenticate` takes the credential and identity headers out of
what goes upstream, `headers` takes `Server` and the like out of what goes to the client."""

from __future__ import annotations

import re
from typing import Final

from outwork.http.messages import STAMPED_NAMES

_BLANKS: Final = rb"[ \t\x0b\x0c]*"


class LineRemoval:
    """Removing the header lines named in `names` (lower case) from a serialized block (lines
    ending in CRLF, as `RequestHead.block` and `ResponseHead.block`), compiled once per
    config: one regex pass instead of splitting and lower-casing every line per request. A
    line goes when its name, any case, with blanks around it, is one of `names`.

    A block that ends in CRLF (every head's does) is searched from each LF on: a pattern that
    starts with a literal lets the regex engine skip to the next line at C speed, where one
    that starts with `^` is tried at every byte (most of `authenticate`'s and `headers`' cost
    per request). Each match takes a line's preceding LF and its CR, and leaves its own LF for
    the next line; the block gets an LF in front for its first line. Another block goes
    through the line-anchored pattern (tests/filters/test_header_lines.py holds them equal)."""

    __slots__ = ("names", "sizes", "stamped", "_lines", "_after_lf")

    def __init__(self, names: frozenset[bytes]) -> None:
        self.names = names
        self.sizes = frozenset(len(name) for name in names)  # a name of another length is not one
        # Whether it names a line the gateway stamps on requests (`RequestHead.stamped`).
        self.stamped = not names.isdisjoint(STAMPED_NAMES)
        alternatives = b"|".join(re.escape(name) for name in sorted(names)) or b"(?!)"
        line = rb"%s(?:%s)%s:[^\r\n]*" % (_BLANKS, alternatives, _BLANKS)
        self._lines = re.compile(rb"(?im)^%s(?:\r\n|\Z)" % line)
        self._after_lf = re.compile(rb"(?i)\n%s\r(?=\n)" % line)

    def block(self, block: bytes) -> bytes:
        if block.endswith(b"\r\n"):
            return self._after_lf.sub(b"", b"\n" + block)[1:]
        return self._lines.sub(b"", block)
