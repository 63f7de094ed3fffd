"""An incremental JSON checker: RFC 8259 syntax and size limits, fed chunk by chunk.

    checker = JsonChecker(JsonLimits(max_depth=20))
    checker.feed(chunk)   # as often as chunks come; raises JsonViolation at the first problem
    checker.finish()      # the body ended: raises JsonViolation unless it held one JSON value

It never holds the body and never builds the document: its state is the stack of open
containers (their kinds and entry counts), the mode it is in, the length of the string it is
inside, and at most a few bytes of a token cut by a chunk boundary (a number, `true`, an
escape: all bounded). What it checks:

- syntax: exactly one value (any JSON value, RFC 8259 2), whitespace around it only; strings
  with valid escapes and no control characters; the whole body valid UTF-8 (no BOM);
- `max_depth`: containers open at once (`[]` is depth 1, `[[]]` depth 2);
- `max_keys`: members of one object; `max_array`: elements of one array;
- `max_string`: bytes of a string (key or value) once its escapes are decoded, as UTF-8 (an
  escaped surrogate counts 2, so a pair counts the 4 bytes of the character it stands for);
- `max_number`: characters of a number as written;
- `max_size` (optional): bytes of the body.

Speed: a byte at a time in Python would do a few MB/s. The checker works token by token with
compiled regexes, and where it can, a run of many members or elements at once: a run of values
(scalars, and containers of them up to `NESTING` levels deep) in an object or array is matched
by one regex call, which the limits are built into (string bytes, number length, entries of the
containers inside the run, their depth), and the run's own entries are counted from the
separators outside its strings and containers (`_entries`; not at all when the container closes
right after, within its limit even counting every separator). Everything else (deeper
containers, strings the run cannot vouch for, tokens cut by a chunk boundary) takes the
token-by-token way, which the fast one must agree with: the property tests feed every document
whole, in pieces and byte by byte, and compare with a strict parser. About 60-70 MB/s here
(`bench/threat_json.py`).
"""

from __future__ import annotations

import codecs
import re
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

import regex

from outwork.http.ascii import BACKSLASH, OPEN_BRACE, OPEN_BRACKET, QUOTE

# Modes: what the checker expects next.
_VALUE: Final = 0  # a value (or `]` right after `[`)
_KEY: Final = 1  # a member's key (or `}` right after `{`)
_COLON: Final = 2  # the `:` after a key
_AFTER: Final = 3  # after a value: `,`, the container's end, or (at the top) nothing but whitespace
_STRING: Final = 4  # inside a string

_OBJECT: Final = 123  # `{`, as a byte: the kind of an open container
_ARRAY: Final = 91  # `[`
_QUOTE: Final = 34
_BACKSLASH: Final = 92
_WHITESPACE: Final = frozenset(b" \t\n\r")
_NUMBER_START: Final = frozenset(b"-0123456789")
_SHORT_ESCAPES: Final = frozenset(b'"\\/bfnrt')
_LITERALS: Final = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_UTF8_SLICE: Final = 1 << 16  # bytes decoded at once to check UTF-8 (bounds the temporary str)

_WS: Final = re.compile(rb"[ \t\n\r]*")
_PLAIN: Final = re.compile(rb'[^"\\\x00-\x1f]*')  # string bytes that stand for themselves
_HEX4: Final = re.compile(rb"[0-9a-fA-F]{4}")
_NUMBER_CHARS: Final = re.compile(rb"[-+.eE0-9]*")
_NUMBER: Final = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class JsonViolation(Exception):
    """The body is not JSON, or passes a limit. `limit` names which: a limit's key
    (`max_depth`, `max_keys`, `max_array`, `max_string`, `max_number`, `max_size`) or
    `syntax`."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_depth: int = 20
    max_keys: int = 1000
    max_string: int = 65536
    max_array: int = 10000
    max_number: int = 100
    max_size: int | None = None
    # The fast-run regexes, compiled once per limits (they have the limits built in).
    runs: _Runs = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", _Runs(self))


NESTING: Final = 2  # levels of containers a fast run may hold inside its members or elements
WINDOW: Final = 1 << 16  # bytes: the least a fast run may take at once (see `_Runs`)

# The runs rely on possessive quantifiers and atomic groups. `re` has them since Python 3.11 but
# matched some possessive repeats wrongly before 3.11.5 (CPython gh-106052), and Debian 12 ships
# 3.11.2: there the `regex` module runs them (about three times slower; correct everywhere).
RUNS_ENGINE: Final[ModuleType] = re if sys.version_info >= (3, 11, 5) else regex


class _Runs:
    """Regexes for a flat run of members (`"k": v, "k": v, "k": `) or elements (`v, v, `):
    the values are scalars (strings with escapes, numbers within `max_number` characters and
    followed by a byte that ends them, not by the end of the data, `true`, `false`, `null`) or
    containers of them, up to `NESTING` levels deep, whose entry counts are bounded in the regex
    (`max_keys`, `max_array`). `members[level]` allows `level` levels of containers inside.

    A run ends where the next token is something else (a deeper container, a token cut by the
    chunk, a string it cannot vouch for). Strings are bounded one of two ways: with a small
    `max_string` (under `WINDOW`), a run's strings hold no escapes and at most `max_string`
    bytes (a string with an escape takes the token-by-token way); with a large one, escapes are
    allowed and a run is matched within a `window` of `max_string` bytes, so no string in it can
    be longer (a string's decoded length is at most its written length). Every group is atomic:
    JSON is deterministic, and backtracking into a run could only cost time."""

    __slots__ = ("members", "elements", "window")

    def __init__(self, limits: JsonLimits, engine: ModuleType = RUNS_ENGINE) -> None:
        ws = rb"[ \t\n\r]*+"
        if limits.max_string < WINDOW:
            string = rb'"[^"\\\x00-\x1f]{0,%d}+"' % limits.max_string
            self.window = 1 << 48  # no window: all the data
        else:
            string = rb'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
            self.window = limits.max_string
        number = (
            rb"(?=[-+.eE0-9]{1,%d}[^-+.eE0-9])-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?[0-9]++)?+"
            % limits.max_number
        )
        key = string + ws + b":" + ws
        value = rb"(?>%s|%s|true|false|null)" % (string, number)
        self.members: list[Any] = []  # compiled by `engine`: re.Pattern or regex.Pattern
        self.elements: list[Any] = []
        for _level in range(NESTING + 1):
            # Group 1: the run ends with a member (group 2: and its value); else after a comma.
            members = b"(?:%s%s%s,%s)*+(?:(%s)(%s%s)?+)?+" % (key, value, ws, ws, key, value, ws)
            # Group 1: the run ends with an element; else after a comma.
            elements = b"(?:%s%s,%s)*+(%s%s)?+" % (value, ws, ws, value, ws)
            self.members.append(engine.compile(members))
            self.elements.append(engine.compile(elements))
            array = rb"\[%s(?:%s%s(?:,%s%s%s){0,%d}+)?+\]" % (
                ws,
                value,
                ws,
                ws,
                value,
                ws,
                limits.max_array - 1,
            )
            obj = rb"\{%s(?:%s%s%s(?:,%s%s%s%s){0,%d}+)?+\}" % (
                ws,
                key,
                value,
                ws,
                ws,
                key,
                value,
                ws,
                limits.max_keys - 1,
            )
            value = rb"(?>%s|%s|true|false|null|%s|%s)" % (string, number, array, obj)


_INNER: Final = re.compile(rb"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")  # an innermost container
_NOT_STRUCTURE: Final = bytes(range(256)).translate(None, b"[]{},:")


def _entries(run: bytes, separator: bytes) -> int:
    """Separators in a run (valid JSON, from `_Runs`) outside its strings and containers.

    Counted with bytes methods rather than a regex over the strings: with the escaped
    backslashes and quotes gone (pairs, left to right, as escapes are read), the quotes left
    alternate open and close, so every other piece between them is outside the strings."""
    if QUOTE in run:
        if BACKSLASH in run:
            run = run.replace(b"\\\\", b"").replace(b'\\"', b"")
        run = b"".join(run.split(b'"')[::2])
    if OPEN_BRACKET in run or OPEN_BRACE in run:
        run = run.translate(None, _NOT_STRUCTURE)
        while OPEN_BRACKET in run or OPEN_BRACE in run:  # at most NESTING passes
            run = _INNER.sub(b"", run)
    return run.count(separator)


def _utf8_length(code_unit: int) -> int:
    """Bytes of UTF-8 a `\\uXXXX` escape decodes to (a surrogate: half of its pair's 4)."""
    if code_unit < 0x80:
        return 1
    if code_unit < 0x800 or 0xD800 <= code_unit < 0xE000:
        return 2
    return 3


class JsonChecker:
    """One body's check. Not reusable: after a violation, every call raises it again."""

    __slots__ = (
        "limits",
        "_mode",
        "_close_ok",
        "_kinds",
        "_counts",
        "_string_length",
        "_in_key",
        "_carry",
        "_size",
        "_utf8",
        "_utf8_pending",
        "_seen_value",
        "_failed",
    )

    def __init__(self, limits: JsonLimits) -> None:
        self.limits = limits
        self._mode = _VALUE
        self._close_ok = False  # `]` or `}` may come now (right after the opening bracket)
        self._kinds = bytearray()  # the open containers, outermost first
        self._counts: list[int] = []  # entries seen in each open container
        self._string_length = 0  # decoded bytes of the string being read
        self._in_key = False  # the string being read is a key
        self._carry = b""  # the start of a token cut by the chunk boundary
        self._size = 0
        # Made at the first byte that is not ASCII (most bodies have none: they need no decoder).
        self._utf8: codecs.IncrementalDecoder | None = None
        self._utf8_pending = False  # the decoder holds the start of a character
        self._seen_value = False
        self._failed: JsonViolation | None = None

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def feed(self, data: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            self._size += len(data)
            max_size = self.limits.max_size
            if max_size is not None and self._size > max_size:
                raise JsonViolation("max_size", f"body over {max_size} bytes")
            if self._utf8_pending or not data.isascii():
                self._check_utf8(data, final=False)
            if self._carry:
                data, self._carry = self._carry + data, b""
            self._scan(data, final=False)
        except JsonViolation as exc:
            self._failed = exc
            raise

    def finish(self) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            if self._utf8 is not None:
                self._check_utf8(b"", final=True)
            data, self._carry = self._carry, b""
            self._scan(data, final=True)
            if self._mode == _STRING:
                raise JsonViolation("syntax", "unterminated string")
            if not self._seen_value:
                raise JsonViolation("syntax", "no JSON value")
            if self._kinds or self._mode != _AFTER:
                raise JsonViolation("syntax", "incomplete JSON value")
        except JsonViolation as exc:
            self._failed = exc
            raise

    def _check_utf8(self, data: bytes, final: bool) -> None:
        utf8 = self._utf8
        if utf8 is None:
            utf8 = self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        decode = utf8.decode
        try:
            if len(data) <= _UTF8_SLICE:
                decode(data, final)
            else:
                view = memoryview(data)
                for start in range(0, len(data), _UTF8_SLICE):
                    decode(view[start : start + _UTF8_SLICE], False)
                if final:
                    decode(b"", True)
        except UnicodeDecodeError:
            raise JsonViolation("syntax", "not UTF-8") from None
        self._utf8_pending = bool(utf8.getstate()[0])

    def _scan(self, data: bytes, final: bool) -> None:
        """Read `data` as far as it goes; a token it cuts short goes to `_carry` (unless
        `final`, where the token ends with the data)."""
        limits = self.limits
        kinds = self._kinds
        counts = self._counts
        mode = self._mode
        close_ok = self._close_ok
        n = len(data)
        pos = 0
        while True:
            if mode == _STRING:
                pos = self._string_body(data, pos)
                if pos < 0:  # the data ends inside the string
                    self._mode = _STRING
                    return
                mode = _COLON if self._in_key else _AFTER
                continue
            if pos < n and data[pos] in _WHITESPACE:
                pos = _WS.match(data, pos).end()  # type: ignore[union-attr]
            if pos >= n:
                break
            byte = data[pos]
            if mode == _AFTER:
                if not kinds:
                    raise JsonViolation("syntax", "data after the JSON value")
                if byte == 44:  # ,
                    pos += 1
                    mode = _KEY if kinds[-1] == _OBJECT else _VALUE
                    close_ok = False
                elif byte == 125 and kinds[-1] == _OBJECT or byte == 93 and kinds[-1] == _ARRAY:
                    kinds.pop()
                    counts.pop()
                    pos += 1
                else:
                    raise JsonViolation("syntax", f"unexpected byte {byte:#04x} after a value")
            elif mode == _KEY:
                if byte == _QUOTE:
                    run = _fast_run(limits, True, len(kinds), data, pos)
                    if run is not None:
                        end = run.end()
                        # Colons count members, and those in strings too: if that is within
                        # the limit and the object closes right after, the exact count can
                        # matter no more; otherwise it is made.
                        count = counts[-1] + data.count(b":", pos, end)
                        if not (count <= limits.max_keys and end < n and data[end] == 125):
                            count = counts[-1] + _entries(data[pos:end], b":")
                        counts[-1] = count
                        if count > limits.max_keys:
                            raise _over("max_keys", limits.max_keys, "members in an object")
                        pos = end
                        close_ok = False
                        if run.group(1) is None:  # after a comma
                            mode = _KEY
                        elif run.group(2) is None:  # after a key and its colon
                            mode = _VALUE
                        else:
                            mode = _AFTER
                        continue
                    count = counts[-1] + 1
                    counts[-1] = count
                    if count > limits.max_keys:
                        raise _over("max_keys", limits.max_keys, "members in an object")
                    pos += 1
                    self._string_length = 0
                    self._in_key = True
                    mode = _STRING
                elif byte == 125 and close_ok:
                    kinds.pop()
                    counts.pop()
                    pos += 1
                    mode = _AFTER
                else:
                    raise JsonViolation("syntax", f"unexpected byte {byte:#04x} for a key")
            elif mode == _COLON:
                if byte != 58:
                    raise JsonViolation("syntax", f"unexpected byte {byte:#04x} for a colon")
                pos += 1
                mode = _VALUE
                close_ok = False
            else:  # _VALUE
                in_array = bool(kinds) and kinds[-1] == _ARRAY
                if byte == 93 and close_ok and in_array:
                    kinds.pop()
                    counts.pop()
                    pos += 1
                    mode = _AFTER
                    continue
                if in_array:
                    run = _fast_run(limits, False, len(kinds), data, pos)
                    if run is not None:
                        end = run.end()
                        last = run.group(1) is not None
                        count = counts[-1] + data.count(b",", pos, end) + last  # as for objects
                        if not (count <= limits.max_array and end < n and data[end] == 93):
                            count = counts[-1] + _entries(data[pos:end], b",") + last
                        counts[-1] = count
                        if count > limits.max_array:
                            raise _over("max_array", limits.max_array, "elements in an array")
                        pos = end
                        close_ok = False
                        mode = _AFTER if last else _VALUE
                        self._seen_value = True
                        continue
                if byte in _NUMBER_START:
                    chars_end = _NUMBER_CHARS.match(data, pos).end()  # type: ignore[union-attr]
                    if chars_end == n and not final:
                        if n - pos > limits.max_number:
                            raise _over("max_number", limits.max_number, "characters in a number")
                        self._carry = data[pos:]
                        break
                    number = _NUMBER.match(data, pos)
                    if number is None:
                        raise JsonViolation("syntax", "malformed number")
                    end = number.end()
                    if end - pos > limits.max_number:
                        raise _over("max_number", limits.max_number, "characters in a number")
                    pos = end
                    mode = _AFTER
                elif byte in _LITERALS:
                    literal = _LITERALS[byte]
                    if data.startswith(literal, pos):
                        pos += len(literal)
                        mode = _AFTER
                    elif not final and n - pos < len(literal) and literal.startswith(data[pos:]):
                        self._carry = data[pos:]
                        break
                    else:
                        raise JsonViolation("syntax", "unknown literal")
                elif byte == _QUOTE:
                    pos += 1
                    self._string_length = 0
                    self._in_key = False
                    mode = _STRING
                elif byte == _OBJECT or byte == _ARRAY:
                    if len(kinds) >= limits.max_depth:
                        raise _over("max_depth", limits.max_depth, "levels of nesting")
                    pos += 1
                    mode = _KEY if byte == _OBJECT else _VALUE
                    close_ok = True
                else:
                    raise JsonViolation("syntax", f"unexpected byte {byte:#04x} for a value")
                self._seen_value = True
                if in_array:
                    count = counts[-1] + 1
                    counts[-1] = count
                    if count > limits.max_array:
                        raise _over("max_array", limits.max_array, "elements in an array")
                if mode != _AFTER and byte in (_OBJECT, _ARRAY):
                    kinds.append(byte)
                    counts.append(0)
        self._mode = mode
        self._close_ok = close_ok

    def _string_body(self, data: bytes, pos: int) -> int:
        """Read string content from `pos`: the position after the closing quote, or -1 when
        the data ends first (an escape cut short goes to `_carry`)."""
        n = len(data)
        length = self._string_length
        limit = self.limits.max_string
        try:
            while True:
                end = _PLAIN.match(data, pos).end()  # type: ignore[union-attr]
                length += end - pos
                if length > limit:
                    raise _over("max_string", limit, "bytes in a string")
                pos = end
                if pos >= n:
                    return -1
                byte = data[pos]
                if byte == _QUOTE:
                    return pos + 1
                if byte != _BACKSLASH:
                    raise JsonViolation("syntax", f"control character {byte:#04x} in a string")
                if pos + 1 >= n:
                    self._carry = data[pos:]
                    return -1
                escape = data[pos + 1]
                if escape in _SHORT_ESCAPES:
                    length += 1
                    pos += 2
                elif escape == 117:  # u
                    if pos + 6 > n:
                        if not _HEX4.match(data[pos + 2 :] + b"0000"):
                            raise JsonViolation("syntax", "bad \\u escape in a string")
                        self._carry = data[pos:]
                        return -1
                    digits = data[pos + 2 : pos + 6]
                    if not _HEX4.fullmatch(digits):
                        raise JsonViolation("syntax", "bad \\u escape in a string")
                    length += _utf8_length(int(digits, 16))
                    pos += 6
                else:
                    raise JsonViolation("syntax", "bad escape in a string")
                if length > limit:
                    raise _over("max_string", limit, "bytes in a string")
        finally:
            self._string_length = length


def _fast_run(limits: JsonLimits, members: bool, depth: int, data: bytes, pos: int) -> Any:
    """The longest run of members (or elements) at `pos` inside a container at `depth`, within
    the runs' window, or None."""
    level = min(NESTING, limits.max_depth - depth)
    runs = limits.runs
    pattern = (runs.members if members else runs.elements)[level]
    run = pattern.match(data, pos, pos + runs.window)
    return run if run is not None and run.end() > pos else None


def _over(limit: str, value: int, what: str) -> JsonViolation:
    return JsonViolation(limit, f"more than {value} {what}")
