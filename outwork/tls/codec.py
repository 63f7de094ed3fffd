"""The one bounded reader every parse goes through, and its writing counterpart.

A length prefix opens a sub-reader over exactly that many bytes: inner reads cannot pass it,
and a sub-reader closed with bytes left over is a `decode_error`. Nothing ever slices the
input with a peer-supplied length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from outwork.tls.alerts import decode_error

T = TypeVar("T")


class Reader:
    __slots__ = ("_data", "_pos", "_end")

    def __init__(self, data: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos == self._end

    def expect_end(self, what: str) -> None:
        if self._pos != self._end:
            raise decode_error(f"{self._end - self._pos} trailing bytes after {what}")

    def _take(self, n: int) -> int:
        pos = self._pos
        if n > self._end - pos:
            raise decode_error(f"need {n} bytes, {self._end - pos} left")
        self._pos = pos + n
        return pos

    def uint8(self) -> int:
        pos = self._take(1)
        return self._data[pos]

    def uint16(self) -> int:
        pos = self._take(2)
        d = self._data
        return (d[pos] << 8) | d[pos + 1]

    def uint24(self) -> int:
        pos = self._take(3)
        d = self._data
        return (d[pos] << 16) | (d[pos + 1] << 8) | d[pos + 2]

    def uint32(self) -> int:
        pos = self._take(4)
        return int.from_bytes(self._data[pos : pos + 4], "big")

    def fixed(self, n: int) -> bytes:
        """Exactly n bytes, n chosen by the protocol (never by the peer)."""
        pos = self._take(n)
        return bytes(self._data[pos : pos + n])

    def _length(self, width: int) -> int:
        if width == 1:
            return self.uint8()
        if width == 2:
            return self.uint16()
        return self.uint24()

    def opaque(self, width: int, minimum: int = 0, maximum: int | None = None) -> bytes:
        """A length-prefixed byte string with its RFC bounds."""
        with self.block(width, minimum, maximum) as sub:
            return sub.fixed(sub.remaining())

    @contextmanager
    def block(self, width: int, minimum: int = 0, maximum: int | None = None) -> Iterator[Reader]:
        """A sub-reader over a length-prefixed block; leftover bytes inside it are an error."""
        length = self._length(width)
        if length < minimum:
            raise decode_error(f"length {length} below minimum {minimum}")
        if maximum is not None and length > maximum:
            raise decode_error(f"length {length} above maximum {maximum}")
        start = self._take(length)
        sub = Reader(self._data, start, start + length)
        yield sub
        sub.expect_end("length-prefixed block")

    def vector(
        self,
        width: int,
        item: Callable[[Reader], T],
        minimum: int = 0,
        maximum: int | None = None,
    ) -> list[T]:
        """A length-prefixed list of items; bounds are in bytes, as the RFCs state them."""
        with self.block(width, minimum, maximum) as sub:
            items = []
            while not sub.at_end():
                items.append(item(sub))
            return items


class Writer:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def uint8(self, v: int) -> None:
        self._buf.append(v)

    def uint16(self, v: int) -> None:
        self._buf += v.to_bytes(2, "big")

    def uint24(self, v: int) -> None:
        self._buf += v.to_bytes(3, "big")

    def uint32(self, v: int) -> None:
        self._buf += v.to_bytes(4, "big")

    def raw(self, data: bytes) -> None:
        self._buf += data

    def opaque(self, width: int, data: bytes) -> None:
        self._buf += len(data).to_bytes(width, "big")
        self._buf += data

    @contextmanager
    def block(self, width: int) -> Iterator[None]:
        """Write a length prefix that is filled in once the block's content is known."""
        start = len(self._buf)
        self._buf += bytes(width)
        yield
        length = len(self._buf) - start - width
        if length >= 1 << (8 * width):
            raise ValueError("block too long for its length prefix")
        self._buf[start : start + width] = length.to_bytes(width, "big")
