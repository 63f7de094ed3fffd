"""What a block of code leaves in reference cycles: objects only the garbage collector frees."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cycles_left() -> Iterator[list[str]]:
    """The collector is off inside the block; after it, the list holds the type names of the
    objects found in reference cycles made there (none: everything went by reference counts)."""
    left: list[str] = []
    gc.collect()
    gc.disable()
    try:
        yield left
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left += [type(o).__qualname__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
