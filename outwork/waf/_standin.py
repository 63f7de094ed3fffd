"""A stand-in for the `wafops` modules (transforms, operators, patterns) with their
signatures, so the engine runs before they land. Deleted once they do: nothing here is the
product's matching (plain `re`, approximate transformations, no libinjection)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OperatorMatch:
    matched: bytes
    captures: tuple[bytes, ...] = ()


class Operator(Protocol):
    def match(self, value: bytes, expand: Callable[[str], bytes]) -> OperatorMatch | None: ...


def _pcre(pattern: str) -> re.Pattern[bytes]:
    flags = 0
    text = re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: f"\\x{int(m.group(1), 16):02x}", pattern)
    text = text.replace("\\z", "\\Z")
    if "(?i)" in text:
        text = text.replace("(?i)", "")
        flags |= re.I
    if "(?s)" in text:
        text = text.replace("(?s)", "")
        flags |= re.S
    return re.compile(text.encode("utf-8", "surrogateescape"), flags)


@dataclass(frozen=True, slots=True)
class _Fn:
    fn: Callable[[bytes, Callable[[str], bytes]], OperatorMatch | None]

    def match(self, value: bytes, expand: Callable[[str], bytes]) -> OperatorMatch | None:
        return self.fn(value, expand)


def _num(v: bytes) -> int:
    m = re.match(rb"\s*(-?\d+)", v)
    return int(m.group(1)) if m else 0


def build_operator(name: str, argument: str, data_dir: Path) -> Operator:
    arg = argument

    def expanded(expand: Callable[[str], bytes]) -> bytes:
        return expand(arg) if "%{" in arg else arg.encode()

    key = name.lower()
    if key == "rx":
        rx = _pcre(arg)

        def m_rx(v: bytes, e: Callable[[str], bytes]) -> OperatorMatch | None:
            m = rx.search(v)
            if m is None:
                return None
            groups = tuple(g or b"" for g in m.groups()[:9])
            return OperatorMatch(m.group(0), (m.group(0), *groups))

        return _Fn(m_rx)
    if key in ("pm", "pmfromfile", "pmf"):
        if key == "pm":
            words = [w.lower().encode() for w in arg.split()]
        else:
            words = []
            for file in arg.split():
                for line in (data_dir / file).read_text("utf-8").splitlines():
                    if line.strip() and not line.startswith("#"):
                        words.append(line.strip().lower().encode())

        def m_pm(v: bytes, e: Callable[[str], bytes]) -> OperatorMatch | None:
            low = v.lower()
            for w in words:
                if w in low:
                    return OperatorMatch(w)
            return None

        return _Fn(m_pm)
    simple: dict[str, Callable[[bytes, bytes], bool]] = {
        "streq": lambda v, a: v == a,
        "beginswith": lambda v, a: v.startswith(a),
        "endswith": lambda v, a: v.endswith(a),
        "contains": lambda v, a: a in v,
        "containsword": lambda v, a: re.search(rb"\b" + re.escape(a) + rb"\b", v) is not None,
        "within": lambda v, a: v in a,
        "eq": lambda v, a: _num(v) == _num(a),
        "ge": lambda v, a: _num(v) >= _num(a),
        "gt": lambda v, a: _num(v) > _num(a),
        "lt": lambda v, a: _num(v) < _num(a),
        "le": lambda v, a: _num(v) <= _num(a),
        "unconditionalmatch": lambda v, a: True,
        "nomatch": lambda v, a: False,
        "detectsqli": lambda v, a: False,
        "detectxss": lambda v, a: False,
        "validateurlencoding": lambda v, a: re.search(rb"%(?![0-9a-fA-F]{2})", v) is not None,
        "validateutf8encoding": lambda v, a: not _utf8(v),
        "ipmatch": lambda v, a: _ip_in(v, a),
    }
    if key == "validatebyterange":
        allowed: set[int] = set()
        for part in arg.split(","):
            lo, _, hi = part.strip().partition("-")
            allowed.update(range(int(lo), int(hi or lo) + 1))
        simple["validatebyterange"] = lambda v, a: any(b not in allowed for b in v)
    test = simple.get(key)
    if test is None:
        raise ValueError(f"unknown operator @{name}")

    def m_simple(v: bytes, e: Callable[[str], bytes]) -> OperatorMatch | None:
        return OperatorMatch(v) if test(v, expanded(e)) else None

    return _Fn(m_simple)


def _utf8(v: bytes) -> bool:
    try:
        v.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _ip_in(v: bytes, a: bytes) -> bool:
    try:
        ip = ipaddress.ip_address(v.decode())
        return any(
            ip in ipaddress.ip_network(n.strip(), strict=False) for n in a.decode().split(",")
        )
    except ValueError:
        return False


class PatternSet:
    def __init__(self, patterns: Sequence[str]) -> None:
        self.size = len(patterns)

    def candidates(self, value: bytes) -> set[int]:
        return set(range(self.size))
