"""A stand-in for the `wafops` modules (transforms, operators, patterns) with their
signatures, so the engine runs before they land. Deleted once they do: nothing here is the
product's matching (plain `re`, approximate transformations, no libinjection)."""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote_to_bytes


def _url_decode_uni(value: bytes) -> bytes:
    def uni(m: re.Match[bytes]) -> bytes:
        code = int(m.group(1), 16)
        return bytes([code & 0xFF]) if code > 0xFF else bytes([code])

    value = re.sub(rb"%u([0-9a-fA-F]{4})", uni, value)
    return unquote_to_bytes(value.replace(b"+", b" "))


def _html(value: bytes) -> bytes:
    return html.unescape(value.decode("latin-1")).encode("utf-8", "surrogatepass")


def _js(value: bytes) -> bytes:
    def rep(m: re.Match[bytes]) -> bytes:
        s = m.group(0)
        if s[1:2] in (b"x",):
            return bytes([int(s[2:], 16)])
        if s[1:2] == b"u":
            return bytes([int(s[2:], 16) & 0xFF])
        return s[1:2]

    return re.sub(rb"\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\.", rep, value)


def _norm_path(value: bytes) -> bytes:
    parts: list[bytes] = []
    for part in re.sub(rb"/+", b"/", value).split(b"/"):
        if part == b"..":
            if parts and parts[-1] not in (b"", b".."):
                parts.pop()
        elif part != b".":
            parts.append(part)
    return b"/".join(parts)


def _cmdline(value: bytes) -> bytes:
    value = re.sub(rb"[\\\"'^]", b"", value)
    value = re.sub(rb"\s*([/(,;])\s*", rb"\1", value)
    return re.sub(rb"\s+", b" ", value).lower()


TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {
    "lowercase": lambda v: v.lower(),
    "uppercase": lambda v: v.upper(),
    "urldecodeuni": _url_decode_uni,
    "urldecode": _url_decode_uni,
    "htmlentitydecode": _html,
    "jsdecode": _js,
    "cssdecode": lambda v: re.sub(rb"\\(.)", rb"\1", v),
    "utf8tounicode": lambda v: v,
    "removenulls": lambda v: v.replace(b"\0", b""),
    "cmdline": _cmdline,
    "removewhitespace": lambda v: re.sub(rb"\s", b"", v),
    "replacecomments": lambda v: re.sub(rb"/\*.*?(\*/|$)", b" ", v, flags=re.S),
    "removecommentschar": lambda v: re.sub(rb"/\*|\*/|--|#", b"", v),
    "normalizepath": _norm_path,
    "normalisepath": _norm_path,
    "normalizepathwin": lambda v: _norm_path(v.replace(b"\\", b"/")),
    "escapeseqdecode": _js,
    "compresswhitespace": lambda v: re.sub(rb"\s+", b" ", v),
    "length": lambda v: str(len(v)).encode(),
    "base64decode": lambda v: base64.b64decode(v + b"==", validate=False) if v else v,
    "sha1": lambda v: hashlib.sha1(v).digest(),
    "hexencode": lambda v: v.hex().encode(),
    "trim": lambda v: v.strip(),
}


@lru_cache(maxsize=1024)
def pipeline(names: Sequence[str]) -> Callable[[bytes], bytes]:
    steps = [TRANSFORMS[n.lower()] for n in names]

    def run(value: bytes) -> bytes:
        for step in steps:
            try:
                value = step(value)
            except ValueError:
                pass
        return value

    return run


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
