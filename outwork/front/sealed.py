"""Buffers that bulk response bytes are sealed into (TLS records), reused once written.

The bulk path (`ClientProtocol.response_body_borrowed`) seals an upstream read straight into
one of these and hands it to the transport. The transport may keep it (uvloop keeps a view of
what the socket did not take), so a buffer is filled again only once the transport has passed
all of its bytes to the kernel. Transports are first in, first out: when the transport holds
no more bytes than were written after a buffer, none of that buffer is left in it. Counting
only the bulk writes after it (other writes add to what the transport holds, never take away)
keeps that test on the safe side without counting every write.

A fresh buffer costs a page-zeroing allocation of a quarter MiB; a large one freed at each read
had glibc return the heap's top to the kernel and fault it in again (17% of a download's CPU
under `perf`). A connection keeps these only while a response is sent in bulk.
"""

from __future__ import annotations

from typing import Final

# Buffers kept ready per connection; more are in the transport while it is paused.
MAX_FREE: Final = 2


class SealedOutput:
    __slots__ = ("_lent", "_free", "_size")

    def __init__(self, size: int) -> None:
        self._size = size  # room for the records of one full upstream read
        self._lent: list[tuple[bytearray, int]] = []  # written, oldest first, with their sizes
        self._free: list[bytearray] = []

    def take(self, size: int, buffered: int) -> bytearray:
        """A buffer of at least `size` bytes that no transport reads from any more, the
        transport now holding `buffered` bytes (`get_write_buffer_size()`)."""
        lent = self._lent
        after = 0  # bytes written after the buffer looked at
        for index in range(len(lent) - 1, -1, -1):
            if buffered <= after:
                # This one and every older one are wholly out of the transport.
                free = self._free
                for buffer, _ in lent[: index + 1]:
                    if len(free) < MAX_FREE:
                        free.append(buffer)
                del lent[: index + 1]
                break
            after += lent[index][1]
        free = self._free
        while free:
            buffer = free.pop()
            if len(buffer) >= size:
                return buffer
        return bytearray(max(size, self._size))

    def lend(self, buffer: bytearray, written: int) -> None:
        """`buffer` was handed to the transport with `written` bytes of it."""
        self._lent.append((buffer, written))
