"""The one bounded reader every parse goes through, and its writing counterpart.

A length prefix opens a sub-reader over exactly that many bytes: inner reads cannot pass it,
and a sub-reader closed with bytes left over is a `decode_error`. Nothing ever slices the
input with a peer-supplied length.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from outwork.tls.alerts import decode_error

T = TypeVar("T")


class Reader:
    __slots__ = ("_data", "_pos", "_end")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
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

    # uint8, uint16 and _length repeat _take's check inline: they run for every field of
    # every handshake message, and a method call costs as much as the read itself.

    def uint8(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise decode_error(f"need 1 bytes, {self._end - pos} left")
        self._pos = pos + 1
        return self._data[pos]

    def uint16(self) -> int:
        pos = self._pos
        if 2 > self._end - pos:
            raise decode_error(f"need 2 bytes, {self._end - pos} left")
        self._pos = pos + 2
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
        return self._data[pos : pos + n]

    def _length(self, width: int) -> int:
        pos = self._pos
        if width > self._end - pos:
            raise decode_error(f"need {width} bytes, {self._end - pos} left")
        self._pos = pos + width
        d = self._data
        if width == 2:
            return (d[pos] << 8) | d[pos + 1]
        if width == 1:
            return d[pos]
        return (d[pos] << 16) | (d[pos + 1] << 8) | d[pos + 2]

    def _bounded_length(self, width: int, minimum: int, maximum: int | None) -> int:
        length = self._length(width)
        if length < minimum:
            raise decode_error(f"length {length} below minimum {minimum}")
        if maximum is not None and length > maximum:
            raise decode_error(f"length {length} above maximum {maximum}")
        return length

    def opaque(self, width: int, minimum: int = 0, maximum: int | None = None) -> bytes:
        """A length-prefixed byte string with its RFC bounds."""
        # The hottest parse of a handshake (some 20 per ClientHello): taken directly, not
        # through `block`, whose sub-reader would be read whole anyway.
        length = self._bounded_length(width, minimum, maximum)
        pos = self._take(length)
        return self._data[pos : pos + length]

    def uint16_tuple(
        self, width: int, minimum: int = 0, maximum: int | None = None
    ) -> tuple[int, ...]:
        """A length-prefixed vector of uint16 (bounds in bytes); an odd length is a
        decode_error."""
        length = self._bounded_length(width, minimum, maximum)
        if length % 2:
            raise decode_error("odd length in a list of 16-bit values")
        pos = self._take(length)
        # In C, all at once (struct caches the compiled format).
        return struct.unpack_from(f">{length >> 1}H", self._data, pos)

    def typed_opaques(
        self, width: int, minimum: int, max_count: int, what: str = "entries"
    ) -> list[tuple[int, bytes]]:
        """A length-prefixed block of entries `uint16 type; opaque body<0..2^16-1>` (the
        extensions of a handshake message), read whole; more than `max_count` entries is a
        decode_error. Each entry's length is checked against its block as `block` and
        `opaque` would, read inline: a ClientHello has some 20 of them."""
        length = self._bounded_length(width, minimum, None)
        pos = self._take(length)
        end = pos + length
        d = self._data
        out: list[tuple[int, bytes]] = []
        while pos < end:
            if len(out) == max_count:
                raise decode_error(f"more than {max_count} {what}")
            if end - pos < 4:
                raise decode_error(f"need 4 bytes, {end - pos} left")
            start = pos + 4
            size = (d[pos + 2] << 8) | d[pos + 3]
            if size > end - start:
                raise decode_error(f"need {size} bytes, {end - start} left")
            out.append(((d[pos] << 8) | d[pos + 1], d[start : start + size]))
            pos = start + size
        return out

    def block(self, width: int, minimum: int = 0, maximum: int | None = None) -> _Block:
        """A sub-reader over a length-prefixed block; leftover bytes inside it are an error."""
        length = self._bounded_length(width, minimum, maximum)
        start = self._take(length)
        return _Block(Reader(self._data, start, start + length))

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


class _Block:
    """`with reader.block(...) as sub`: the sub-reader, checked to be read whole on a normal
    exit. A plain class: a generator-based context manager costs some 3 us per block, and a
    ClientHello opens dozens."""

    __slots__ = ("_sub",)

    def __init__(self, sub: Reader) -> None:
        self._sub = sub

    def __enter__(self) -> Reader:
        return self._sub

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._sub.expect_end("length-prefixed block")


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

    def block(self, width: int) -> _PrefixedBlock:
        """Write a length prefix that is filled in once the block's content is known."""
        start = len(self._buf)
        self._buf += bytes(width)
        return _PrefixedBlock(self._buf, start, width)


class _PrefixedBlock:
    """`with writer.block(width)`: fills in the length prefix on a normal exit."""

    __slots__ = ("_buf", "_start", "_width")

    def __init__(self, buf: bytearray, start: int, width: int) -> None:
        self._buf = buf
        self._start = start
        self._width = width

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            return
        buf, start, width = self._buf, self._start, self._width
        length = len(buf) - start - width
        if length >= 1 << (8 * width):
            raise ValueError("block too long for its length prefix")
        buf[start : start + width] = length.to_bytes(width, "big")
