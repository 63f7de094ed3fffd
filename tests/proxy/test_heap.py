"""heap.settle: start-up objects leave the collector's generations; later garbage is freed."""

from __future__ import annotations

import subprocess
import sys

# Run in a child: freezing the test process's heap would change every later test's.
_CHILD = """
import gc, weakref
from outwork.proxy import heap
import outwork.proxy.server  # what a worker has loaded by the time it serves
heap.settle()
frozen = gc.get_freeze_count()
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made while serving
gone = weakref.ref(a)
del a, b
gc.collect()
print(frozen, gone() is None)
"""


def test_settle_freezes_start_up_objects_and_still_collects_later_cycles() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) > 10_000
    assert out[1] == "True"
