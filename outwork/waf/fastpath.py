"""Which values a transformation pipeline leaves as they are, known without running it.

Most values of a benign request (`page=2`, `Alice`, `json.items.3.note`) hold none of the bytes
CRS's transformations act on (`%`, `&`, `\\`, comment marks, path dots, whitespace runs, bytes
outside ASCII). For those a pipeline is the identity, or `bytes.lower` when it lowercases, and
a C-level pass per value says so (`FastPath.acts`). Each entry names the bytes without which
the transformation changes nothing (read from its definition in transforms.py; the property test
in tests/waf/test_fastpath.py holds every entry to the real transformation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

from outwork.waf.transforms import Transform, holds, pipeline, remove_whitespace

# name: (bytes that may make it act, lowercases, a double space may make it act)
TRIGGERS: Final[dict[str, tuple[bytes, bool, bool]]] = {
    "lowercase": (b"", True, False),
    "urldecode": (b"%+", False, False),
    "urldecodeuni": (b"%+", False, False),
    "htmlentitydecode": (b"&", False, False),
    "jsdecode": (b"\\", False, False),
    "cssdecode": (b"\\", False, False),
    "escapeseqdecode": (b"\\", False, False),
    "utf8tounicode": (b"", False, False),  # ASCII stays: bytes >= 0x80 are always triggers
    "removenulls": (b"", False, False),  # NUL is always a trigger
    "removewhitespace": (b" \t\n\r\v\f", False, False),
    "compresswhitespace": (b"\t\n\r\v\f", False, True),
    "replacecomments": (b"/*", False, False),
    "removecommentschar": (b"/*#-<>", False, False),
    "cmdline": (b",;\t\n\r\v\f\"'\\^/(", True, True),
    "normalizepath": (b"", False, False),  # see SEQUENCES
    "normalisepath": (b"", False, False),
    "normalizepathwin": (b"\\", False, False),
    "normalisepathwin": (b"\\", False, False),
}
# Transformations that act only on sequences of bytes: (those sequences, a final sequence
# that makes them act, their bytes). A path is its own normal form unless it holds "//" or "./"
# or ends with "." (JSON names as `json.items.3.note` hold dots and are left alone).
_PATH: Final = ((b"//", b"./"), b".", b"./")
SEQUENCES: Final[dict[str, tuple[tuple[bytes, ...], bytes, bytes]]] = {
    "normalizepath": _PATH,
    "normalisepath": _PATH,
    "normalizepathwin": _PATH,
    "normalisepathwin": _PATH,
}


@dataclass(frozen=True, slots=True)
class FastPath:
    # A `bytes.translate` table that changes exactly the bytes that may make the pipeline
    # act (NUL and bytes >= 0x80 always among them) and keeps the others.
    marks: bytes
    lowers: bool  # a value it leaves otherwise alone comes out lower-cased
    # What `acts` searches for, as a set of bytes and "a double space": values holding none
    # of these (one set test for a whole collection, see `signature`) are left alone.
    triggers: frozenset[int] = frozenset()
    doubles: bool = False
    sequences: tuple[bytes, ...] = ()  # sequences that may make it act (SEQUENCES)
    endings: tuple[bytes, ...] = ()  # and final sequences
    # A `translate` table like `marks` for the bytes of `sequences` and `endings` (and the
    # space, with `doubles`): a value it leaves holds none of them. None: nothing to look for.
    rest_marks: bytes | None = None

    def acts(self, value: bytes) -> bool:
        """Whether the pipeline may change `value` beyond lowercasing it (False: it does
        not). C-speed tests: one table-driven `translate` pass changes the value iff it
        holds a trigger byte (a regex search of the same class costs two to thirty times as
        much, the more the longer the value; a value it leaves is returned as is, so the
        comparison is an identity test), `find` and `endswith` the sequences. A second pass
        first says whether any of their bytes is there: most values hold no `/`, `.` or
        space, and the pass costs a third of one search for a sequence (a generic method
        call that builds a tuple)."""
        if value.translate(self.marks) != value:
            return True
        rest_marks = self.rest_marks
        if rest_marks is None or value.translate(rest_marks) == value:
            return False
        for sequence in self.sequences:
            if holds(value, sequence):
                return True
        for ending in self.endings:
            if value.endswith(ending):
                return True
        return self.doubles and holds(value, b"  ")

    def leaves(self, signature: frozenset[int], has_double_space: bool) -> bool:
        """Whether the pipeline leaves alone (but for lowercasing) every value whose bytes
        are all outside `signature` (see `signature`)."""
        return signature.isdisjoint(self.triggers) and not (self.doubles and has_double_space)


# Every byte some fast path may act on: what `signature` keeps of a value.
ALL_TRIGGERS: Final = frozenset(
    b"".join(entry[0] for entry in TRIGGERS.values())
    + b"".join(sequence[2] for sequence in SEQUENCES.values())
    + b"\x00"
    + bytes(range(0x80, 0x100))
)
# The other bytes: deleted from a value (in C) before its bytes are collected.
_NOT_TRIGGERS: Final = bytes(sorted(frozenset(range(0x100)) - ALL_TRIGGERS))


def signature(values: list[bytes]) -> tuple[frozenset[int], bool]:
    """The trigger bytes found in `values`, and whether one holds a double space. (The values
    joined by a byte that is no trigger and no space: one C pass for a collection, which
    makes no trigger byte and no double space that is not in a value.)"""
    joined = b"_".join(values)
    return frozenset(joined.translate(None, _NOT_TRIGGERS)), holds(joined, b"  ")


def fast_path(names: Sequence[str]) -> FastPath | None:
    """The fast path of a pipeline (lower-case names), or None when one of its
    transformations has none (`length`, `sha1`, `base64Decode`, ...)."""
    triggers = bytearray(b"\x00")
    sequences: dict[bytes, None] = {}
    endings: dict[bytes, None] = {}
    sequence_bytes = bytearray()
    lowers = doubles = False
    for name in names:
        entry = TRIGGERS.get(name)
        if entry is None:
            return None
        triggers += entry[0]
        lowers |= entry[1]
        doubles |= entry[2]
        if name in SEQUENCES:
            within, ending, their_bytes = SEQUENCES[name]
            sequences.update(dict.fromkeys(within))
            endings[ending] = None
            sequence_bytes += their_bytes
    single = frozenset(triggers) | frozenset(range(0x80, 0x100))
    every = single | frozenset(sequence_bytes)
    rest = frozenset(sequence_bytes) | (frozenset(b" ") if doubles else frozenset())
    return FastPath(
        _marking(single),
        lowers,
        every,
        doubles,
        tuple(sequences),
        tuple(endings),
        _marking(rest) if rest else None,
    )


def _marking(marked: frozenset[int]) -> bytes:
    """A `translate` table that changes exactly the bytes in `marked`."""
    return bytes((byte + 1) % 0x100 if byte in marked else byte for byte in range(0x100))


def segmented(names: Sequence[str], whole: Transform) -> Transform:
    """`whole` (the pipeline `names`, lower-case) run as runs of transformations with a fast
    path each, and the others (`base64Decode`, `length`, ...) between them: a value skips a
    run that would leave it alone (CRS's base64 pipelines decode after three such steps)."""
    segments: list[tuple[FastPath | None, Transform]] = []
    run: list[str] = []
    for name in names:
        if name in TRIGGERS:
            run.append(name)
            continue
        if run:
            segments.append((fast_path(run), pipeline(run)))
            run = []
        segments.append((None, pipeline((name,))))
    if run:
        segments.append((fast_path(run), pipeline(run)))
    if len(segments) == 1 or not any(fast is not None for fast, _ in segments):
        return whole  # one run: the engine checks its fast path before calling it
    first_other = next(i for i, (fast, _) in enumerate(segments) if fast is None)
    head = tuple(segments[: first_other + 1])
    tail = tuple(segments[first_other + 1 :])
    if not tail:
        return _runs(head)
    # What follows a decoding step sees few distinct values (every value that starts with
    # `json.` base64-decodes alike): it is memoized.
    return Memoized(_runs(head), _runs(tail))


def _runs(steps: tuple[tuple[FastPath | None, Transform], ...]) -> Transform:
    def apply(value: bytes) -> bytes:
        for fast, step in steps:
            if fast is None or fast.acts(value):
                value = step(value)
            elif fast.lowers:
                value = value.lower()
        return value

    return apply


# A memoized transformation keeps at most this many results of values up to this size (it
# starts again when full: a peer sending ever new values pays what it would without).
MEMO_ENTRIES = 4096  # not Final: tests make it small
MEMO_VALUE_BYTES: Final = 256


class Memoized:
    """`then(first(value))`, with the results of `then` kept (see MEMO_ENTRIES)."""

    __slots__ = ("first", "then", "memo")

    def __init__(self, first: Transform, then: Transform) -> None:
        self.first = first
        self.then = then
        self.memo: dict[bytes, bytes] = {}

    def __call__(self, value: bytes) -> bytes:
        value = self.first(value)
        memo = self.memo
        found = memo.get(value)
        if found is None:
            found = self.then(value)
            if len(value) <= MEMO_VALUE_BYTES:
                if len(memo) >= MEMO_ENTRIES:
                    memo.clear()
                memo[value] = found
        return found


_BASE64_PREFIX: Final = re.compile(rb"[A-Za-z0-9+/]*")


def input_key(names: Sequence[str]) -> Callable[[bytes], bytes] | None:
    """For a pipeline that base64-decodes after a run of transformations with a fast path (as
    CRS's 934xxx rules): a key of a value such that values with the same key come out of the
    pipeline the same, so that one of them stands for all (base64Decode reads only a value's
    leading base64 characters). None for other pipelines. Pipelines that share the run before
    their base64Decode share one key function (the engine works out a collection's keys once
    for all of them)."""
    first_other = next((i for i, name in enumerate(names) if name not in TRIGGERS), None)
    if not first_other or names[first_other] != "base64decode":
        return None
    return _base64_key(tuple(names[:first_other]))


@cache
def _base64_key(run: tuple[str, ...]) -> Callable[[bytes], bytes] | None:
    """`input_key` of the pipelines whose run before base64Decode is `run`."""
    head = fast_path(run)
    if head is None or head.lowers:
        return None
    acts = head.acts
    leading = _BASE64_PREFIX.match
    # A run whose only step a value triggers is removeWhitespace gives the value without its
    # whitespace (CRS's 934xxx pipelines: urlDecodeUni, jsDecode, removeWhitespace; a JSON
    # string with spaces): the key is the base64 prefix of that. Only when the other steps
    # act on single bytes (no sequence, no double space, no lowercasing), which removing
    # whitespace cannot make.
    others = [name for name in run if name != "removewhitespace"]
    rest = fast_path(others) if len(others) < len(run) else None
    rest_acts = (
        rest.acts
        if rest is not None and not rest.doubles and not set(others) & set(SEQUENCES)
        else None
    )

    def key(value: bytes) -> bytes:
        # A value the run changes is its own key: it holds a trigger byte other than
        # whitespace, which no base64 prefix does, so the kinds of key never meet.
        if acts(value):
            if rest_acts is None or rest_acts(value):
                return value
            value = remove_whitespace(value)
        found = leading(value)
        return found.group() if found else b""

    return key
