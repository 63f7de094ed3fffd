"""Removing header lines from a serialized head (`RequestHead.block`, `ResponseHead.block`),
compiled once per config: `authenticate` takes the credential and identity headers out of
what goes upstream, `headers` takes `Server` and the like out of what goes to the client."""

from __future__ import annotations

import re
from typing import Final

from outwork.http.messages import STAMPED_NAMES

_BLANKS: Final = rb"[ \t\x0b\x0c]*"
# A line's value and its CR, before its LF: `[^\r\n]*\r(?=\n)` (the first CR or LF after the
# colon is a CR, and an LF follows it), said so that the regex engine reads the value with its
# one-byte loops (`[^\n]*`, `[^\r]*`) rather than testing each byte against a set of two: the
# first LF has a CR before it, and the first CR an LF after it, so they are one CRLF (the colon
# before the value is not a CR). A third of the cost of a cut line.
_VALUE_CR: Final = rb"(?=[^\n]*(?<=\r)\n)[^\r]*\r(?=\n)"


def _first_bytes(names: frozenset[bytes]) -> bytes:
    """A lookahead for the bytes a line named in `names` can start with (a first byte of a
    name, or a blank): any other line is passed over at once, not read up to its name."""
    if not all(names):
        return b""  # an empty name: a line may start with anything
    firsts = {name[0] for name in names} | set(b" \t\x0b\x0c")
    return b"(?=[%s])" % re.escape(bytes(sorted(firsts)))


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
        name = rb"%s(?:%s)%s:" % (_BLANKS, alternatives, _BLANKS)
        self._lines = re.compile(rb"(?im)^%s[^\r\n]*(?:\r\n|\Z)" % name)
        self._after_lf = re.compile(rb"(?i)\n%s%s%s" % (_first_bytes(names), name, _VALUE_CR))

    def block(self, block: bytes) -> bytes:
        if block.endswith(b"\r\n"):
            return self._after_lf.sub(b"", b"\n" + block)[1:]
        return self._lines.sub(b"", block)
