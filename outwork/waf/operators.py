"""SecLang operators (`@rx`, `@pm`, `@detectSQLi`, ...) with ModSecurity 2.9's semantics.

`build_operator(name, argument, data_dir)` compiles one operator once, at load; its
`match(value, expand)` runs per value. An argument holding a macro (`%{tx.allowed_methods}`)
is expanded at match time through `expand`, as ModSecurity does; a constant one is encoded
once. Negation (`!@`) and what a match sets (TX.0-9, MATCHED_VAR) are the engine's.

Rule files are text (UTF-8); ModSecurity sees their bytes, so arguments are matched as their
UTF-8 bytes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from outwork.http.ascii import PERCENT
from outwork.waf import libinjection
from outwork.waf.acmp import ModsecAcmp
from outwork.waf.literals import required_literals
from outwork.waf.patterns import CompiledRegex, compile_regex, literal_set
from outwork.waf.transforms import holds

# The contract's optional helper for the engine: the lowercased literals one of which every
# match of an @rx pattern contains (None: no such set). PatternSet already uses it.
prefilter_literals = required_literals

Expand = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class OperatorMatch:
    matched: bytes
    captures: tuple[bytes, ...] = ()  # @rx groups 0..9 (TX.0-TX.9 with `capture`)


class Operator(Protocol):
    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None: ...


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class _Argument:
    """An operator's argument: constant bytes, or text with macros expanded per match."""

    __slots__ = ("text", "constant")

    def __init__(self, text: str) -> None:
        self.text = text
        self.constant = None if "%{" in text else _utf8(text)

    def value(self, expand: Expand) -> bytes:
        return self.constant if self.constant is not None else expand(self.text)


# --- regex and phrase matching -----------------------------------------------------------


class Rx:
    """@rx: PCRE semantics (DOTALL, DOLLAR_ENDONLY, bytes); see patterns.py for the engine."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.regex: CompiledRegex = compile_regex(pattern)

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        groups = self.regex.search(value)
        if groups is None:
            return None
        return OperatorMatch(groups[0], groups)


class Pm:
    """@pm / @pmFromFile: any of the phrases, case-insensitively (ASCII), as ModSecurity's
    acmp answers (acmp.py: it misses some overlapping phrases a full Aho-Corasick finds). A
    search for every phrase at once (an RE2 Set of them: `literal_set`) finds every
    occurrence; a value it passes never matches, and a value it matches goes through acmp's
    own walk, which names the match."""

    def __init__(self, phrases: Iterable[bytes]) -> None:
        written = [phrase for phrase in phrases if phrase]
        self.phrases = tuple(dict.fromkeys(phrase.lower() for phrase in written))
        if not self.phrases:
            raise ValueError("no phrase to match")
        self._phrase_set = literal_set(self.phrases)
        self._acmp = ModsecAcmp(written)

    def found_in(self, values: list[bytes]) -> bool:
        """Whether a phrase occurs in one of `values`."""
        return self.found_in_joined(joined_lower(values))

    def found_in_joined(self, joined: bytes) -> bool:
        """`found_in` of the values `joined_lower(values)` gives (made once for the rules
        that read the same values)."""
        return bool(self._phrase_set.Match(joined))

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        if not self._phrase_set.Match(value.lower()):
            return None
        found = self._acmp.first_match(value)
        return None if found is None else OperatorMatch(found, (found,))


def joined_lower(values: list[bytes]) -> bytes:
    """What `Pm.found_in_joined` searches: the values lowercased and joined by a line break,
    which no phrase holds (phrases are words or lines), so a phrase found is in one value."""
    return b"\n".join(values).lower()


def _phrases(argument: str) -> list[bytes]:
    """@pm's argument: phrases separated by whitespace."""
    return _utf8(argument).split()


def _data_file_lines(path: Path) -> list[bytes]:
    """A CRS .data file: one entry a line; blank lines and '#' comments skipped."""
    lines = []
    for raw in path.read_bytes().splitlines():
        line = raw.strip()
        if line and not line.startswith(b"#"):
            lines.append(line)
    return lines


def _data_files(argument: str, data_dir: Path) -> list[Path]:
    names = argument.split()
    if not names:
        raise ValueError("no data file named")
    paths = []
    for name in names:
        if "://" in name:
            raise ValueError(f"{name}: data files are local files, not URLs")
        path = data_dir / name
        if not path.is_file():
            raise ValueError(f"{path}: no such data file")
        paths.append(path)
    return paths


# --- libinjection --------------------------------------------------------------------------


class DetectSqli:
    """@detectSQLi: libinjection's SQLi tokenizer; the match is its fingerprint (what
    ModSecurity puts in TX.0)."""

    def __init__(self) -> None:
        self._libinjection = libinjection.load()

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        fingerprint = self._libinjection.sqli(value)
        if fingerprint is None:
            return None
        return OperatorMatch(fingerprint, (fingerprint,))


class DetectXss:
    """@detectXSS: libinjection's HTML5 tokenizer."""

    def __init__(self) -> None:
        self._libinjection = libinjection.load()

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        return OperatorMatch(value) if self._libinjection.xss(value) else None


# --- strings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StringTest:
    """@streq, @beginsWith, @endsWith, @contains, @within, @containsWord, @strmatch:
    case-sensitive byte comparisons against the (expanded) argument."""

    test: Callable[[bytes, bytes], bool]
    argument: _Argument

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        parameter = self.argument.value(expand)
        return OperatorMatch(value) if self.test(value, parameter) else None


def _within(value: bytes, parameter: bytes) -> bool:
    # ModSecurity: "The empty string always matches".
    return not value or holds(parameter, value)


def _contains_word(value: bytes, parameter: bytes) -> bool:
    if not parameter:
        return True
    word = re.compile(rb"(?<![0-9A-Za-z_])" + re.escape(parameter) + rb"(?![0-9A-Za-z_])")
    return word.search(value) is not None


STRING_TESTS: dict[str, Callable[[bytes, bytes], bool]] = {
    "streq": lambda value, parameter: value == parameter,
    "beginswith": lambda value, parameter: value.startswith(parameter),
    "endswith": lambda value, parameter: value.endswith(parameter),
    "contains": lambda value, parameter: holds(value, parameter),
    "strmatch": lambda value, parameter: holds(value, parameter),
    "within": _within,
    "containsword": _contains_word,
}


# --- numbers -------------------------------------------------------------------------------

_LEADING_INTEGER = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def c_atoi(text: bytes) -> int:
    """C's atoi(), which ModSecurity applies to both sides: leading spaces, a sign, digits;
    anything else is 0 ("abc" -> 0, "12abc" -> 12). Unlike C it does not wrap above
    2**31 (a huge count stays huge)."""
    match = _LEADING_INTEGER.match(text)
    return int(match.group(1)[:40]) if match else 0


NUMBER_TESTS: dict[str, Callable[[int, int], bool]] = {
    "eq": lambda value, parameter: value == parameter,
    "ge": lambda value, parameter: value >= parameter,
    "gt": lambda value, parameter: value > parameter,
    "le": lambda value, parameter: value <= parameter,
    "lt": lambda value, parameter: value < parameter,
}


@dataclass(frozen=True, slots=True)
class _NumberTest:
    test: Callable[[int, int], bool]
    argument: _Argument

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        parameter = c_atoi(self.argument.value(expand))
        return OperatorMatch(value) if self.test(c_atoi(value), parameter) else None


# --- validation ------------------------------------------------------------------------------


class ValidateByteRange:
    """Matches a value holding a byte outside the ranges ("9,10,13,32-126,128-255")."""

    def __init__(self, argument: str) -> None:
        allowed = bytearray()
        for part in argument.replace(" ", "").split(","):
            low_text, _, high_text = part.partition("-")
            try:
                low = int(low_text)
                high = int(high_text) if high_text else low
            except ValueError:
                raise ValueError(f"bad byte range {part!r}") from None
            if not 0 <= low <= high <= 255:
                raise ValueError(f"bad byte range {part!r}")
            allowed.extend(range(low, high + 1))
        self._allowed = bytes(allowed)

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        outside = value.translate(None, self._allowed)
        return OperatorMatch(value) if outside else None


_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


class ValidateUrlEncoding:
    """Matches a '%' not followed by two hex digits (cut at the end included)."""

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        if PERCENT in value and _BAD_PERCENT.search(value):
            return OperatorMatch(value)
        return None


class ValidateUtf8Encoding:
    """Matches malformed UTF-8: cut sequences, bad continuation bytes, overlong forms,
    surrogates, code points above U+10FFFF (ModSecurity's checks, Python's strict decoder)."""

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        if value.isascii():
            return None
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return OperatorMatch(value)
        return None


# --- addresses -------------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(entries: Iterable[str]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"bad address or network {entry!r}") from None
    if not networks:
        raise ValueError("no address to match")
    return tuple(networks)


class IpMatch:
    """@ipMatch / @ipMatchFromFile: the value is an address inside one of the networks."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks

    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        try:
            address = ipaddress.ip_address(value.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None
        for network in self.networks:
            if address.version == network.version and address in network:
                return OperatorMatch(value)
        return None


class UnconditionalMatch:
    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        return OperatorMatch(value)


class NoMatch:
    def match(self, value: bytes, expand: Expand) -> OperatorMatch | None:
        return None


# --- the table -------------------------------------------------------------------------------


def _no_argument(name: str, argument: str) -> None:
    if argument.strip():
        raise ValueError(f"@{name} takes no argument")


def build_operator(name: str, argument: str, data_dir: Path) -> Operator:
    """The operator `name` (without '@', any case) with its argument as written; `data_dir`
    holds the files of @pmFromFile / @ipMatchFromFile. ValueError for an unknown operator
    or a bad argument (libinjection missing included)."""
    key = name.lower()
    if key == "rx":
        return Rx(argument)
    if key == "pm":
        return Pm(_phrases(argument))
    if key in ("pmfromfile", "pmf"):
        return Pm(
            phrase for path in _data_files(argument, data_dir) for phrase in _data_file_lines(path)
        )
    if key in STRING_TESTS:
        return _StringTest(STRING_TESTS[key], _Argument(argument))
    if key in NUMBER_TESTS:
        return _NumberTest(NUMBER_TESTS[key], _Argument(argument))
    if key == "validatebyterange":
        return ValidateByteRange(argument)
    if key in ("detectsqli", "detectxss"):
        _no_argument(name, argument)
        try:
            return DetectSqli() if key == "detectsqli" else DetectXss()
        except libinjection.LibinjectionMissing as exc:
            raise ValueError(f"@{name}: {exc}") from exc
    simple: dict[str, type[Operator]] = {
        "validateurlencoding": ValidateUrlEncoding,
        "validateutf8encoding": ValidateUtf8Encoding,
        "unconditionalmatch": UnconditionalMatch,
        "nomatch": NoMatch,
    }
    if key in simple:
        _no_argument(name, argument)
        return simple[key]()
    if key == "ipmatch":
        return IpMatch(_networks(argument.split(",")))
    if key in ("ipmatchfromfile", "ipmatchf"):
        return IpMatch(
            _networks(
                line.decode("ascii", "replace")
                for path in _data_files(argument, data_dir)
                for line in _data_file_lines(path)
            )
        )
    raise ValueError(f"unknown operator @{name}")
