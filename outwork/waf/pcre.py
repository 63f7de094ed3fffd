"""PCRE regexes (as CRS writes them) translated for RE2 and for Python's `regex` module.

ModSecurity 2.9 compiles every @rx with PCRE_DOTALL | PCRE_DOLLAR_ENDONLY and matches bytes
(no UTF mode): `.` takes any byte, `$` is the very end of the value, `\\s` includes \\x0b
(PCRE >= 8.34), classes and case folding are ASCII. Each translation keeps those meanings:

- `\\x{HH}` (PCRE's braced escape, one byte here) -> `\\xHH`;
- `$` -> `\\z` (RE2) or `\\Z` (Python: its `$` also matches before a final newline);
- `\\s` -> a class with \\x0b for RE2 (RE2's `\\s` lacks it); `\\h`, `\\v` (PCRE's horizontal
  and vertical space classes; Python reads `\\v` as \\x0b) -> explicit classes.

`needs_backtracking` says why a pattern cannot go to RE2 (a linear-time engine) with the same
meaning; such a pattern runs in `regex` with a time bound instead (patterns.py).
"""

from __future__ import annotations

from dataclasses import dataclass

HORIZONTAL_SPACE = r"\t \xa0"
VERTICAL_SPACE = r"\n\x0b\x0c\r\x85"
PCRE_SPACE = r"\t\n\x0b\x0c\r "
CASE_FOLD = "case-insensitive with non-ASCII bytes"


@dataclass(frozen=True, slots=True)
class Translation:
    re2: str  # for RE2 with Latin-1 encoding, dot_nl, longest_match off
    python: str  # for `regex` on bytes, with DOTALL
    needs_backtracking: str  # "" when RE2 runs it with PCRE's meaning, else why not
    # Whether RE2 running `re2` matches at least every value PCRE matches (true also when
    # RE2 over-matches, e.g. Latin-1 case folding): then RE2 may prefilter it.
    re2_superset: bool


def _braced_hex(pattern: str, i: int) -> tuple[str, int]:
    """`\\x{...}` at pattern[i] (the backslash): the byte escape and the index after it."""
    close = pattern.find("}", i)
    if close < 0:
        raise ValueError(f"unterminated \\x{{ at {i}")
    digits = pattern[i + 3 : close]
    value = int(digits, 16) if digits else 0
    if value > 0xFF:
        raise ValueError(f"\\x{{{digits}}} is above 0xff (values are bytes, not UTF-8)")
    return f"\\x{value:02x}", close + 1


def translate(pattern: str) -> Translation:
    """Translate one CRS/PCRE regex; ValueError for what neither engine can mean.

    `pattern` is text as read from a UTF-8 rule file: PCRE sees its UTF-8 bytes, so each
    byte becomes one character of the translations (which are compiled as Latin-1)."""
    pattern = pattern.encode("utf-8", "surrogateescape").decode("latin-1")
    re2: list[str] = []
    python: list[str] = []
    why: list[str] = []
    in_class = False
    class_start = 0
    # Python's `regex` (version 0) applies an inline flag group such as `(?i)` to the whole
    # pattern; PCRE applies it up to the end of the enclosing group, in the branches after
    # it too. So one that is not at the start becomes a scoped group `(?i:...)`, closed at
    # each '|' of its group (and opened again after it) and where its group closes.
    scoped_flags_open: list[list[str]] = [[]]  # per open group, its scoped flag groups
    i = 0
    n = len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            if i + 1 >= n:
                raise ValueError("pattern ends with a backslash")
            nxt = pattern[i + 1]
            if nxt == "x" and i + 2 < n and pattern[i + 2] == "{":
                token, i = _braced_hex(pattern, i)
                re2.append(token)
                python.append(token)
                continue
            token = pattern[i : i + 2]
            i += 2
            if nxt == "s":
                re2.append(PCRE_SPACE if in_class else f"[{PCRE_SPACE}]")
                python.append(token)
            elif nxt == "h":
                spaces = HORIZONTAL_SPACE if in_class else f"[{HORIZONTAL_SPACE}]"
                re2.append(spaces)
                python.append(spaces)
            elif nxt == "v":
                spaces = VERTICAL_SPACE if in_class else f"[{VERTICAL_SPACE}]"
                re2.append(spaces)
                python.append(spaces)
            elif nxt == "z" and not in_class:
                re2.append(r"\z")
                python.append(r"\Z")
            elif nxt == "Z" and not in_class:
                why.append("\\Z (end or before a final newline)")
                re2.append(r"\z")
                python.append(r"(?=\n?\Z)")
            elif nxt.isdigit() and nxt != "0" and not in_class:
                why.append(f"backreference {token}")
                re2.append(token)
                python.append(token)
            elif nxt in "GKRXCNE" or nxt == "Q":
                why.append(f"PCRE escape {token}")
                re2.append(token)
                python.append(token)
            else:
                re2.append(token)
                python.append(token)
            continue
        if in_class:
            if char == "]" and i > class_start:
                in_class = False
            elif char == "[" and pattern.startswith("[:", i):
                close = pattern.find(":]", i + 2)
                if close > 0:  # a POSIX class such as [:alpha:] (RE2 and regex know them)
                    re2.append(pattern[i : close + 2])
                    python.append(pattern[i : close + 2])
                    i = close + 2
                    continue
            re2.append(char)
            python.append(char)
            i += 1
            continue
        if char == "[":
            in_class = True
            # A ']' right after '[' or '[^' is a literal member, not the end.
            class_start = i + 1
            if pattern.startswith("^", class_start):
                class_start += 1
            if pattern.startswith("]", class_start):
                class_start += 1
                re2.append(pattern[i:class_start])
                python.append(pattern[i:class_start])
                i = class_start
                continue
            re2.append(char)
            python.append(char)
            i += 1
            continue
        if char == "$":
            re2.append(r"\z")
            python.append(r"\Z")
            i += 1
            continue
        if char == "(" and pattern.startswith("(?", i):
            flags = _inline_flags(pattern, i)
            if flags and i > 0:
                re2.append(flags)
                python.append(flags[:-1] + ":")
                scoped_flags_open[-1].append(flags[:-1] + ":")
                i += len(flags)
                continue
            for opener, reason in (
                ("(?=", "lookahead"),
                ("(?!", "negative lookahead"),
                ("(?<=", "lookbehind"),
                ("(?<!", "negative lookbehind"),
                ("(?>", "atomic group"),
                ("(?|", "branch reset"),
                ("(?(", "conditional"),
                ("(?R", "recursion"),
                ("(?&", "subroutine"),
            ):
                if pattern.startswith(opener, i):
                    why.append(reason)
                    break
        if char == "(":
            scoped_flags_open.append([])
        elif char == ")" and len(scoped_flags_open) > 1:
            python.append(")" * len(scoped_flags_open.pop()))
        elif char == "|" and scoped_flags_open[-1]:
            opened = scoped_flags_open[-1]
            python.append(")" * len(opened) + "|" + "".join(opened))
            re2.append(char)
            i += 1
            continue
        if char in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            why.append("possessive quantifier")
        re2.append(char)
        python.append(char)
        i += 1
    if in_class:
        raise ValueError("unterminated character class")
    python.append(")" * len(scoped_flags_open[0]))
    re2_text = "".join(re2)
    python_text = "".join(python)
    # RE2 cannot run, or runs with another meaning, whatever is in `why`; so far RE2 takes a
    # superset of what PCRE matches only when nothing is.
    superset = not why
    if not why and "(?i" in pattern and _has_non_ascii_letter(python_text):
        # RE2 folds Latin-1 letters (0xc0-0xfe) when case-insensitive, PCRE's C locale
        # only ASCII ones: RE2 matches more (fine for a prefilter, not for the verdict).
        why.append(CASE_FOLD)
    return Translation(re2_text, python_text, "; ".join(dict.fromkeys(why)), superset)


def _inline_flags(pattern: str, i: int) -> str:
    """`(?i)`, `(?s-i)`... (a flag group with no colon) at pattern[i], or ""."""
    close = pattern.find(")", i)
    if close < 0:
        return ""
    body = pattern[i + 2 : close]
    if body and all(char in "imsxU-" for char in body):
        return pattern[i : close + 1]
    return ""


def _has_non_ascii_letter(pattern: str) -> bool:
    """Whether a byte 0xc0-0xfe appears, literally or as \\xHH, in the pattern."""
    if any(0xC0 <= ord(char) <= 0xFE for char in pattern):
        return True
    lowered = pattern.lower()
    return any(f"\\x{value:02x}" in lowered for value in range(0xC0, 0xFF))
