"""The bulk path's record buffers (`front/sealed.py`): a buffer handed to the transport is
never filled again while the transport may still read from it, and is reused once it cannot.

The transport is modelled as what the rule relies on: first in, first out, and
`get_write_buffer_size()` is what it still holds. Any overwrite of a held buffer would put
other bytes on the wire; the end-to-end check of that is tests/proxy/test_streaming.py (1 GiB
through a stalled client, hashed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outwork.front.sealed import MAX_FREE, SealedOutput


class FifoTransport:
    """Holds what it was given, in order, until `send` passes bytes to the 'kernel'."""

    def __init__(self) -> None:
        self.queue: list[tuple[bytearray, int]] = []  # buffer, bytes of it still held

    def write(self, buffer: bytearray, size: int) -> None:
        self.queue.append((buffer, size))

    def send(self, size: int) -> None:
        while size and self.queue:
            buffer, held = self.queue[0]
            take = min(size, held)
            size -= take
            if take == held:
                self.queue.pop(0)
            else:
                self.queue[0] = (buffer, held - take)

    def buffered(self) -> int:
        return sum(held for _, held in self.queue)

    def holds(self, buffer: bytearray) -> bool:
        return any(held is buffer for held, _ in self.queue)


@given(
    st.lists(
        st.tuples(st.integers(1, 300), st.integers(0, 700), st.booleans()), min_size=1, max_size=40
    )
)
def test_a_buffer_the_transport_still_holds_is_never_handed_out(
    steps: list[tuple[int, int, bool]],
) -> None:
    sealed = SealedOutput(256)
    transport = FifoTransport()
    for size, sent, small_write in steps:
        buffer = sealed.take(size, transport.buffered())
        assert len(buffer) >= size
        assert not transport.holds(buffer)
        sealed.lend(buffer, size)
        transport.write(buffer, size)
        if small_write:  # a response head or a close_notify written between bulk buffers
            transport.write(bytearray(5), 5)
        transport.send(sent)


def test_buffers_are_reused_once_passed_and_few_are_kept() -> None:
    sealed = SealedOutput(100)
    transport = FifoTransport()
    lent: list[bytearray] = []
    for _ in range(MAX_FREE + 2):
        buffer = sealed.take(100, transport.buffered())
        assert all(buffer is not other for other in lent)  # all still held: a new one each
        lent.append(buffer)
        sealed.lend(buffer, 100)
        transport.write(buffer, 100)
    transport.send(10_000)
    again = [sealed.take(100, transport.buffered()) for _ in range(MAX_FREE + 1)]
    reused = [b for b in again if any(b is old for old in lent)]
    assert len(reused) == MAX_FREE
