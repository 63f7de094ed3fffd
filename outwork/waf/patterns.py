"""Regex matching for @rx: one multi-pattern scan per value, then exact matches.

`PatternSet(patterns).candidates(value)` answers, in one pass over the value, which of many
regexes MAY match it (a superset: a regex outside the answer cannot match); the engine runs
the exact match (`compile_regex`) only for those. The pass is one google-re2 `Set` while it
is fast, else one pass for the literals the regexes require (the class docstring says
when and why). A pattern neither can take is always a candidate: never skipped. The engine
takes the answer as a bit mask (`mask`: bit i for pattern i), which it unions and tests
without building sets.

Why not Hyperscan: measured on CRS v4.28's 295 distinct @rx patterns (this machine), its
prefilter-mode database takes 81 s to compile (RE2's Set: 0.14 s) and scans ordinary text
slower (1 KiB: 450 us against 120 us; 64 KiB: 32 ms against 3.4 ms), as the prefilter forms
of CRS's regexes are loose and report many candidates that RE2 rules out.

Exact matching: RE2 (linear time: no input makes it slow) for every pattern it runs with
PCRE's meaning, which is all of CRS v4.28 but one (see pcre.py); the rest run in the `regex`
module with a time limit per match. A match cut by the limit counts as no match, as
ModSecurity does when PCRE's match limit is hit (MSC_PCRE_LIMITS_EXCEEDED); each is counted
in `REGEX_TIMEOUTS` for the engine to report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import re2
import regex
from re2 import _re2

from outwork.waf.literals import required_literals
from outwork.waf.pcre import translate

log = logging.getLogger(__name__)

# A fallback match that runs longer is abandoned (ModSecurity's PCRE match limit plays the
# same part). 50 ms is far above what any CRS pattern takes on a 64 KiB value in `regex`,
# and bounds what one crafted value can cost.
FALLBACK_TIMEOUT_S: Final = 0.05
MAX_CAPTURES: Final = 10  # TX.0 to TX.9

Engine = Literal["re2", "regex"]


@dataclass
class Counters:
    regex_timeouts: int = 0


REGEX_TIMEOUTS: Final = Counters()


# The Set's scan is moved aside after a value on which it ran slower than this (see
# PatternSet): ordinary values take 0.01-0.3 us a byte and a few us at least.
# (A DFA that is still cold builds states too: hence a margin, and three slow values
# within STRIKE_WINDOW scans before the move.) The thread's CPU time, not the wall clock's:
# on a loaded machine a scan the scheduler interrupts reads as slow by the clock (measured
# with CRS, 100 JSON bodies of 64 KiB on this shared machine: 39 scans slow by the clock,
# none by CPU time), and each third one sent the next values to the looser prefilter. Reading
# it costs about 0.15 us more than perf_counter, twice a scan.
SLOW_FIXED_US: Final = 1000.0
SLOW_US_PER_BYTE: Final = 5.0
STRIKES: Final = 3
STRIKE_WINDOW: Final = 64
RETRY_AFTER: Final = 1000
# Longer values always take the prefilter: one slow Set scan must stay short (1 KiB at the
# worst rate measured is 46 ms).
SET_MAX_VALUE: Final = 1024
SET_MAX_MEM: Final = 32 << 20  # CRS's 295 patterns in one Set need more than RE2's 8 MiB default


def _re2_options() -> Any:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1  # bytes, not UTF-8
    options.dot_nl = True  # PCRE_DOTALL
    options.log_errors = False
    # What one regex's lazily built DFA may hold (RE2 falls back to its NFA past it, with the
    # same answers): 295 CRS regexes stay within about 600 MiB whatever the input; all of
    # them compile with far less.
    options.max_mem = 2 << 20
    return options


RE2_OPTIONS: Final = _re2_options()
# google-re2's Python layer (`re2.compile(...).search`, `Set.Match`) wraps each call in
# interpreted code (a generator, a match object, group look-ups): measured, a quarter of
# the engine's instructions per request. The engine calls its C++ objects (`_re2`) instead:
# the same RE2 calls, with bytes in and (start, end) spans out.
_UNANCHORED: Final = _re2.RE2.Anchor.UNANCHORED
_NO_SPAN: Final = (-1, -1)


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


def _mask(indexes: Iterable[int]) -> int:
    found = 0
    for index in indexes:
        found |= 1 << index
    return found


def indexes(mask: int) -> set[int]:
    """The pattern indexes a mask holds."""
    return {index for index in range(mask.bit_length()) if mask >> index & 1}


@dataclass(frozen=True, slots=True)
class CompiledRegex:
    """One @rx pattern, compiled for the engine that runs it with PCRE's meaning."""

    pattern: str
    engine: Engine
    why_fallback: str  # "" for RE2
    _compiled: Any = field(repr=False)  # an `_re2.RE2` or a `regex` pattern
    _groups: int = 1  # how many groups `search` gives: 0..9 as far as the pattern has them

    def search(self, value: bytes) -> tuple[bytes, ...] | None:
        """The groups 0..9 of the first match (b"" for a group that did not take part),
        or None."""
        if self.engine == "re2":
            spans = self._compiled.Match(_UNANCHORED, value, 0, len(value))
            if spans[0] == _NO_SPAN:
                return None
            return tuple(
                b"" if span == _NO_SPAN else value[span[0] : span[1]]
                for span in spans[: self._groups]
            )
        try:
            match = self._compiled.search(value, timeout=FALLBACK_TIMEOUT_S)
        except TimeoutError:
            REGEX_TIMEOUTS.regex_timeouts += 1
            log.warning("regex over its time limit, taken as no match: %.80s", self.pattern)
            return None
        if match is None:
            return None
        return tuple(match.group(index) or b"" for index in range(self._groups))


def compile_regex(pattern: str) -> CompiledRegex:
    """Compile a PCRE pattern as CRS writes it; ValueError if no engine can run it."""
    try:
        translation = translate(pattern)
    except ValueError as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
    if not translation.needs_backtracking:
        compiled = _re2.RE2(_latin1(translation.re2), RE2_OPTIONS)
        if compiled.ok():
            groups = min(MAX_CAPTURES, compiled.NumberOfCapturingGroups() + 1)
            return CompiledRegex(pattern, "re2", "", compiled, groups)
        why = f"RE2: {compiled.error()}"
    else:
        why = translation.needs_backtracking
    try:
        compiled = regex.compile(_latin1(translation.python), regex.DOTALL)
    except (regex.error, UnicodeEncodeError) as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
    return CompiledRegex(pattern, "regex", why, compiled, min(MAX_CAPTURES, compiled.groups + 1))


def _big_set(patterns: Sequence[str]) -> tuple[Any, tuple[int, ...]]:
    """One RE2 Set of every pattern RE2 answers for (with PCRE's meaning, or more), and the
    pattern index of each member."""
    options = re2.Options()
    options.encoding = RE2_OPTIONS.encoding
    options.dot_nl = True
    options.log_errors = False
    options.max_mem = SET_MAX_MEM
    pattern_set = _re2.Set(_UNANCHORED, options)
    members: list[int] = []
    for index, pattern in enumerate(patterns):
        translation = translate(pattern)
        if not translation.re2_superset:
            continue
        if pattern_set.Add(_latin1(translation.re2)) == -1:
            continue  # RE2 cannot compile it
        members.append(index)
    if not members:
        return None, ()
    if not pattern_set.Compile():
        raise ValueError("RE2 could not compile the pattern set")
    return pattern_set, tuple(members)


def literal_set(literals: Iterable[bytes]) -> Any:
    """One RE2 Set of plain strings (matched as they are: a value is lowercased first, where
    the strings are). Its `Match` names every member that occurs in a value, in one pass: a
    Set of plain strings is an Aho-Corasick automaton run as a DFA (its states are bounded by
    the strings' prefixes, so it cannot grow as the patterns' Set can, and a many-match Set
    never gives up on a slow input as RE2's single-regex DFA may), a few instructions a byte
    where pyahocorasick's walk over a decoded str took thousands."""
    options = re2.Options()
    options.encoding = RE2_OPTIONS.encoding
    options.log_errors = False
    options.max_mem = SET_MAX_MEM
    found = _re2.Set(_UNANCHORED, options)
    for literal in literals:
        if found.Add(b"".join(b"\\x%02x" % byte for byte in literal)) == -1:
            raise ValueError(f"RE2 cannot take the literal {literal!r}")
    if not found.Compile():
        raise ValueError("RE2 could not compile the literal set")
    return found


def _literal_set(by_literal: dict[bytes, list[int]]) -> tuple[Any, tuple[tuple[int, ...], ...]]:
    """`literal_set` of the literals, and the patterns that require each member."""
    if not by_literal:
        return None, ()
    return literal_set(by_literal), tuple(tuple(indexes) for indexes in by_literal.values())


class PatternSet:
    """Which of `patterns` may match a value, in one pass over the value.

    Two scans, each complete on its own (a pattern that matches is always reported):
    - one RE2 Set of all the patterns: exact, a few microseconds on ordinary values, but
      its DFA can need new states for nearly every byte of symbol-dense or random input
      (measured on CRS: 45 us a byte, where ordinary text and JSON take 0.01-0.3);
    - the literal prefilter: one pass for the literals each pattern requires (literals.py;
      an RE2 Set of plain strings, see `_literal_set`), bounded (measured on CRS, warm:
      about 0.015 us a byte of random input, 0.004 of JSON) but loose (tens of candidates,
      for the engine's exact regexes to weed out).
    The Set runs on values up to SET_MAX_VALUE bytes while it is fast; three values within
    STRIKE_WINDOW on which it is slow (over SLOW_FIXED_US + SLOW_US_PER_BYTE a byte) move the
    next RETRY_AFTER values to the prefilter, then the Set is tried again. So a peer's
    crafted values cost three slow scans in RETRY_AFTER values, not one each. The answer
    is complete either way: which path ran changes the cost, never what matches.

    The answers are bit masks (bit i: pattern i): the engine unions the answers of a
    collection's values and asks whether a rule's bit is in them, where sets would cost a
    hash and a slot per member (and the young collections a walk over every set kept)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._set, self._set_members = _big_set(self.patterns)
        by_literal: dict[bytes, list[int]] = {}
        always: set[int] = set()
        for index, pattern in enumerate(self.patterns):
            literals = required_literals(pattern)
            if literals is None:
                always.add(index)
                continue
            for literal in literals:
                by_literal.setdefault(literal, []).append(index)
        self._literals, owners = _literal_set(by_literal)
        self._owner_masks = tuple(_mask(indexes) for indexes in owners)
        self._member_masks = tuple(1 << index for index in self._set_members)
        # Patterns the Set cannot answer for: candidates for every value on the Set's path.
        self._outside_set = frozenset(range(len(self.patterns))) - frozenset(self._set_members)
        self._outside_mask = _mask(self._outside_set)
        self.always = frozenset(always)  # on the prefilter's path
        self._always_mask = _mask(always)
        self.filtered = frozenset(range(len(self.patterns))) - self.always
        self._prefilter_left = 0  # values still to scan with the prefilter
        self._strikes = 0
        self._scans_in_window = 0
        self.slow_scans = 0  # values on which the Set was slow (a counter for the engine)

    def engine_of(self, index: int) -> str:
        """How pattern `index` is scanned: "re2-set+literals" (both scans), "literals" (the
        Set cannot run it: prefilter only), or "always" (a candidate for every value)."""
        if index in self._outside_set:
            return "literals" if index in self.filtered else "always"
        return "re2-set+literals" if index in self.filtered else "re2-set"

    def candidates(self, value: bytes) -> set[int]:
        """Indexes of the patterns that MAY match `value` (every one that does is in it)."""
        return indexes(self.mask(value))

    def set_candidates(self, value: bytes) -> set[int]:
        """The RE2 Set's answer: exact for its members, plus every pattern outside it."""
        return indexes(self.set_mask(value))

    def prefilter_candidates(self, value: bytes) -> set[int]:
        """The literal prefilter's answer: patterns with a required literal in the value,
        plus the patterns that require none."""
        return indexes(self.prefilter_mask(value))

    def mask(self, value: bytes) -> int:
        """`candidates` as a bit mask."""
        if self._set is None or len(value) > SET_MAX_VALUE:
            return self.prefilter_mask(value)
        if self._prefilter_left > 0:
            self._prefilter_left -= 1
            return self.prefilter_mask(value)
        return self.set_mask(value)

    def set_mask(self, value: bytes) -> int:
        found = self._outside_mask
        if self._set is None:
            return found
        start = time.thread_time()
        hits = self._set.Match(value)
        elapsed_us = (time.thread_time() - start) * 1e6
        members = self._member_masks
        for hit in hits:
            found |= members[hit]
        self._scans_in_window += 1
        if self._scans_in_window > STRIKE_WINDOW:
            self._scans_in_window = 1
            self._strikes = 0
        if elapsed_us > SLOW_FIXED_US + SLOW_US_PER_BYTE * len(value):
            self.slow_scans += 1
            self._strikes += 1
            if self._strikes >= STRIKES:
                self._strikes = 0
                self._prefilter_left = RETRY_AFTER
        return found

    def prefilter_mask(self, value: bytes) -> int:
        found = self._always_mask
        if self._literals is not None:
            owners = self._owner_masks
            for hit in self._literals.Match(value.lower()):
                found |= owners[hit]
        return found
