"""A JSON body that arrives whole, checked at C speed with the streaming checker's verdicts.

    check_whole(limits, body)   # raises JsonViolation exactly when, and as, JsonChecker would

The streaming checker (json_limits.py) costs about 20 ns a byte in Python. Most request bodies
arrive whole (the pipeline hands a Content-Length body it holds to the filters in one call),
and for those msgspec's C parser decides the syntax while bytes methods bound the limits. This
way only ever says "passes": whatever it cannot prove goes to the streaming checker, which makes
every refusal (its limit and message) as before. Why a pass here is the checker's pass:

- Syntax: msgspec's decoder, reading into `msgspec.Raw` (it walks the document and checks it
  without building it), is no more lenient than the checker (RFC 8259: one value, JSON
  whitespace only, valid escapes, no control characters in strings, no BOM, NaN or Infinity);
  where it refuses more (a lone surrogate escape, nesting past its recursion limit) the
  checker decides. It does not check UTF-8, so a body that is not ASCII is decoded as UTF-8
  first (the checker's rule is on the whole body).
- Limits, first from the body's size and counts over the whole body, strings included, so
  that each is an upper bound: an object of n members takes at least 5n + 1 bytes (`{"":0}`)
  and an array of n elements 2n + 1 (`[0]`), else `:` counts members and `,` + 1 elements;
  `[` and `{` bound the depth; the body's length - 2 the decoded bytes of any string (a string
  never decodes to more bytes than it is written with); and a body without `max_number` + 1
  number characters in a row has no number that long.
- When a bound passes its limit, the figures themselves (`_measured_within`), from the body
  with its strings cut out: what is left of valid JSON is structure, numbers and literals, so
  a run of number characters is one number, and the brackets, colons and commas, with the
  innermost containers removed pass by pass, give each container's entries and the depth.

The property tests hold this to the streaming checker on valid, invalid and near-limit
documents; the JSON fuzz harness runs both on every input.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

import msgspec

from outwork.filters.json_limits import JsonChecker, JsonLimits
from outwork.http.ascii import BACKSLASH

_skip = msgspec.json.Decoder(msgspec.Raw).decode
# msgspec's refusals, and the UTF-8 check's.
_UNDECIDED: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)

_NUMBER_CHARACTERS: Final = b"-+.eE0123456789"
_NUMBER: Final = 1  # Final: a C constant when compiled (a dict lookup per use otherwise)
_OPENING: Final = 2
# Each number character becomes 1, `[` and `{` 2, any other byte 0: a run of 1s is a run of
# number characters, and the 2s count the containers opened (at most).
_MARKS: Final = bytes(
    _NUMBER if byte in _NUMBER_CHARACTERS else _OPENING if byte in b"[{" else 0
    for byte in range(256)
)
_NOT_STRUCTURE: Final = bytes(range(256)).translate(None, b"[]{},:")


def check_whole(limits: JsonLimits, body: bytes) -> None:
    """Raise `JsonViolation` as `JsonChecker` fed `body` and finished would (not for b"": the
    threat filter lets an empty body pass unparsed)."""
    if fast_accepts(limits, body):
        return
    checker = JsonChecker(limits)
    checker.feed(body)
    checker.finish()


def fast_accepts(limits: JsonLimits, body: bytes) -> bool:
    """True only when the streaming checker passes `body` whole; False: it must decide."""
    size = len(body)
    if limits.max_size is not None and size > limits.max_size:
        return False
    try:
        if not body.isascii():
            body.decode("utf-8")
        _skip(body)
    except _UNDECIDED:
        return False
    marks = body.translate(_MARKS)
    if (
        marks.count(_OPENING) <= limits.max_depth
        and ((size - 1) // 5 <= limits.max_keys or body.count(b":") <= limits.max_keys)
        and ((size - 1) // 2 <= limits.max_array or body.count(b",") < limits.max_array)
        and size - 2 <= limits.max_string
        and (size <= limits.max_number or marks.find(_number_run(limits.max_number + 1)) < 0)
    ):
        return True
    return _measured_within(limits, body)


# Each pass reads the skeleton whole: a deep document with many entries near its top (up to
# msgspec's nesting of about 1,000 under a large `max_depth`) would cost far more than the
# streaming checker's one pass, so past this depth that checker decides.
MAX_PASSES: Final = 32


# The runs of number marks `_number_run` made, by length (one per configured `max_number`): a
# dict read per body costs half an lru_cache call from compiled code. Keyed by configs, not by
# peers, yet bounded all the same: reloads with ever new limits must not grow it.
_NUMBER_RUNS: Final[dict[int, bytes]] = {}
MAX_NUMBER_RUNS: Final = 16


def _number_run(length: int) -> bytes:
    """`length` number marks in a row: searched for with `find` (`in` with a bytes needle
    first tries it as an int, and formats the TypeError: about 2,000 instructions)."""
    run = _NUMBER_RUNS.get(length)
    if run is None:
        if len(_NUMBER_RUNS) >= MAX_NUMBER_RUNS:
            _NUMBER_RUNS.clear()
        run = _NUMBER_RUNS[length] = bytes((_NUMBER,)) * length
    return run


@lru_cache(maxsize=32)
def _innermost_within(max_keys: int, max_array: int) -> re.Pattern[bytes]:
    """An innermost container of the skeleton (`_measured_within`) within its limit: an object
    of n members is `{` n colons and n - 1 commas `}`, an array of n elements `[` n - 1 commas
    `]` (its scalars are gone, and its containers once removed leave their commas)."""
    return re.compile(rb"\{[:,]{0,%d}\}|\[,{0,%d}\]" % (2 * max_keys - 1, max_array - 1))


def _measured_within(limits: JsonLimits, body: bytes) -> bool:
    """`body`, valid JSON, is within every limit, measured exactly (False: over one)."""
    if BACKSLASH in body:
        # Escaped backslashes and quotes become one byte (escapes pair left to right as they
        # are read): the quotes left open and close the strings, and each string is still
        # written with at least as many bytes as it decodes to.
        body = body.replace(b"\\\\", b"_").replace(b'\\"', b"_")
    pieces = body.split(b'"')
    strings = pieces[1::2]
    if strings and max(map(len, strings)) > limits.max_string:
        return False
    outside = b"".join(pieces[::2])
    if outside.translate(_MARKS).find(_number_run(limits.max_number + 1)) >= 0:
        return False
    skeleton = outside.translate(None, _NOT_STRUCTURE)
    innermost = _innermost_within(limits.max_keys, limits.max_array)
    depth = 0
    while skeleton:
        depth += 1
        if depth > limits.max_depth or depth > MAX_PASSES:
            return False
        reduced = innermost.sub(b"", skeleton)
        if len(reduced) == len(skeleton):
            return False  # each innermost container left has too many entries
        skeleton = reduced
    return True
