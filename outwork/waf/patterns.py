"""Regex matching for @rx: one multi-pattern scan per value, then exact matches.

`PatternSet(patterns).candidates(value)` answers, in one pass over the value, which of many
regexes MAY match it (a superset: a regex outside the answer cannot match); the engine runs
the exact match (`compile_regex`) only for those. The scan is one google-re2 `Set` (a lazily
built DFA over all the patterns; for a Set, RE2's DFA never gives up on a slow input, it only
resets its cache). A pattern RE2 cannot take with PCRE's meaning is always a candidate: never
skipped.

Why not Hyperscan: measured on CRS v4.28's 295 distinct @rx patterns (this machine), its
prefilter-mode database takes 81 s to compile (RE2's Set: 0.14 s) and scans slower (1 KiB:
450 us against 120 us; 64 KiB: 32 ms against 3.4 ms), as the prefilter forms of CRS's
regexes are loose and report many candidates that RE2 rules out.

Exact matching: RE2 (linear time: no input makes it slow) for every pattern it runs with
PCRE's meaning, which is all of CRS v4.28 but one (see pcre.py); the rest run in the `regex`
module with a time limit per match. A match cut by the limit counts as no match, as
ModSecurity does when PCRE's match limit is hit (MSC_PCRE_LIMITS_EXCEEDED); each is counted
in `REGEX_TIMEOUTS` for the engine to report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import re2
import regex

from outwork.waf.pcre import translate

log = logging.getLogger(__name__)

# A fallback match that runs longer is abandoned (ModSecurity's PCRE match limit plays the
# same part). 50 ms is far above what any CRS pattern takes on a 64 KiB value in `regex`,
# and bounds what one crafted value can cost.
FALLBACK_TIMEOUT_S = 0.05
MAX_CAPTURES = 10  # TX.0 to TX.9

Engine = Literal["re2", "regex"]


@dataclass
class Counters:
    regex_timeouts: int = 0


REGEX_TIMEOUTS = Counters()


def _re2_options() -> Any:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1  # bytes, not UTF-8
    options.dot_nl = True  # PCRE_DOTALL
    options.log_errors = False
    # CRS's largest alternations need more than RE2's 8 MiB default; the DFA of the Set
    # is built lazily, so this is a ceiling, not what it takes.
    options.max_mem = 256 << 20
    return options


RE2_OPTIONS = _re2_options()


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


@dataclass(frozen=True, slots=True)
class CompiledRegex:
    """One @rx pattern, compiled for the engine that runs it with PCRE's meaning."""

    pattern: str
    engine: Engine
    why_fallback: str  # "" for RE2
    _compiled: Any = field(repr=False)

    def search(self, value: bytes) -> tuple[bytes, ...] | None:
        """The groups 0..9 of the first match (b"" for a group that did not take part),
        or None."""
        if self.engine == "re2":
            match = self._compiled.search(value)
        else:
            try:
                match = self._compiled.search(value, timeout=FALLBACK_TIMEOUT_S)
            except TimeoutError:
                REGEX_TIMEOUTS.regex_timeouts += 1
                log.warning("regex over its time limit, taken as no match: %.80s", self.pattern)
                return None
        if match is None:
            return None
        count = min(MAX_CAPTURES, self._compiled.groups + 1)
        return tuple(match.group(index) or b"" for index in range(count))


def compile_regex(pattern: str) -> CompiledRegex:
    """Compile a PCRE pattern as CRS writes it; ValueError if no engine can run it."""
    try:
        translation = translate(pattern)
    except ValueError as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
    if not translation.needs_backtracking:
        try:
            compiled = re2.compile(_latin1(translation.re2), RE2_OPTIONS)
            return CompiledRegex(pattern, "re2", "", compiled)
        except re2.error as exc:
            why = f"RE2: {exc}"
    else:
        why = translation.needs_backtracking
    try:
        compiled = regex.compile(_latin1(translation.python), regex.DOTALL)
    except (regex.error, UnicodeEncodeError) as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
    return CompiledRegex(pattern, "regex", why, compiled)


def _re2_set(patterns: Sequence[str], indexes: Sequence[int]) -> tuple[Any, list[int], set[int]]:
    """An RE2 Set of the given patterns, its position -> pattern index, and the refused."""
    anchor = re2.Options()
    anchor.encoding = RE2_OPTIONS.encoding
    anchor.dot_nl = True
    anchor.log_errors = False
    anchor.max_mem = RE2_OPTIONS.max_mem
    pattern_set = re2.Set.SearchSet(anchor)
    positions: list[int] = []
    refused: set[int] = set()
    for index in indexes:
        try:
            pattern_set.Add(_latin1(translate(patterns[index]).re2))
        except (re2.error, ValueError):
            refused.add(index)
            continue
        positions.append(index)
    if positions:
        pattern_set.Compile()
    return pattern_set, positions, refused


class PatternSet:
    """Which of `patterns` may match a value, in one scan of the value."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        scannable = [
            index for index, pattern in enumerate(self.patterns) if translate(pattern).re2_superset
        ]
        self._set: Any = None
        self._positions: list[int] = []
        refused: set[int] = set()
        if scannable:
            self._set, self._positions, refused = _re2_set(self.patterns, scannable)
        self.scanned = frozenset(self._positions)
        # RE2 cannot stand in for PCRE on these: candidates for every value.
        self.always = frozenset(range(len(self.patterns))) - self.scanned

    def engine_of(self, index: int) -> str:
        """Which scan answers for pattern `index`: "re2-set", or "always" (no scan)."""
        return "re2-set" if index in self.scanned else "always"

    def candidates(self, value: bytes) -> set[int]:
        """Indexes of the patterns that MAY match `value` (every one that does is in it)."""
        found = set(self.always)
        if self._set is not None:
            hits = self._set.Match(value)
            if hits:
                positions = self._positions
                found.update(positions[hit] for hit in hits)
        return found
