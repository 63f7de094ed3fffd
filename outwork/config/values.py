"""Values written in a config, and the schema types built on them: durations, sizes, rates,
networks, secret references.

Each `parse_*` takes what the YAML holds and raises ValueError with a message for the user.
`Cidr`, `Rate` and `Secret` are types a schema (the config's, or a policy step's msgspec Struct)
can declare a field as: the loader converts them with `dec_hook`, so a bad value is a problem
on its own line (`policies.p.access.allow[1]: ...`), and `outwork schema` describes them with
`schema_hook`. This module imports nothing of the filters or the loader, so a filter module may
import it while the loader imports the filters.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from outwork.keys.secret import SecretError, SecretRef, parse_secret_ref, read_secret

# "90s", "30m", "12h", "7d" or a number of seconds.
Duration = str | int | float
# "10MiB", "2GiB", "512KiB", "1MB" or a number of bytes.
Size = str | int
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^(\d+)[ \t]*([KMGT]i?B|B)?$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
}
MAX_BODY_SIZE = 1 << 40  # 1 TiB: far beyond any real upload, and still a bound
# "10/s", "1000/m", "5/h", "100/d", or a count per duration: "100/10s".
_RATE = re.compile(r"^(\d{1,10})/(\d+(?:\.\d+)?)?([smhd])$")
MAX_RATE_COUNT = 10**9  # requests per period: beyond any real limit, and still a bound
MAX_RATE_PERIOD = 86400.0 * 366  # a period longer than a year is a typo
MAX_CIDR_TEXT = 64  # characters: the longest IPv6 network is 43


def parse_duration(value: Duration) -> float:
    """`90s`, `30m`, `12h`, `7d` or a number of seconds. Raises ValueError for the user."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match:
            raise ValueError(f"invalid duration {value!r} (expected e.g. 90s, 30m, 12h, 7d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be positive")
    return seconds


def parse_size(value: Size) -> int:
    """`10MiB`, `2GiB`, `512KiB`, `1MB` or a number of bytes. Raises ValueError for the user."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value.strip())
        if not match:
            raise ValueError(f"invalid size {value!r} (expected e.g. 1048576, 512KiB, 10MiB, 2GiB)")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < 0:
        raise ValueError(f"invalid size {value!r}: must not be negative")
    if size > MAX_BODY_SIZE:
        raise ValueError(f"{value!r} is larger than the maximum {MAX_BODY_SIZE} bytes (1TiB)")
    return size


class Rate:
    """`count` events per `period` seconds (`10/s`: 10 per 1.0). A plain class, not a
    dataclass: msgspec would read a dataclass from a mapping, and a rate is written `10/s`."""

    __slots__ = ("count", "period", "text")

    def __init__(self, count: int, period: float, text: str = "") -> None:
        self.count = count
        self.period = period
        self.text = text  # as written, for messages and logs

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rate) and (other.count, other.period) == (self.count, self.period)

    def __hash__(self) -> int:
        return hash((self.count, self.period))

    def __repr__(self) -> str:
        return f"Rate({self.count}, {self.period:g})"

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        return self.text or f"{self.count}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """`10/s`, `1000/m`, `5/h`, `100/d`, or a count per duration (`100/10s`). Raises
    ValueError for the user."""
    if not isinstance(text, str):
        raise ValueError(f"invalid rate {text!r} (expected e.g. 10/s, 1000/m, 100/10s)")
    match = _RATE.match(text.strip())
    if not match:
        raise ValueError(f"invalid rate {text!r} (expected e.g. 10/s, 1000/m, 5/h, 100/10s)")
    count = int(match.group(1))
    if not 1 <= count <= MAX_RATE_COUNT:
        raise ValueError(f"invalid rate {text!r}: the count is 1 to {MAX_RATE_COUNT}")
    period = float(match.group(2) or 1) * _UNITS[match.group(3)]
    if not 0 < period <= MAX_RATE_PERIOD:
        raise ValueError(f"invalid rate {text!r}: the period is above 0 and at most a year")
    return Rate(count, period, text.strip())


def parse_cidr(text: str) -> Network:
    """An IP network (`10.0.0.0/8`, `2001:db8::/32`) or one address (`192.0.2.7`, a /32 or
    /128). Strict: `10.0.0.1/8` is a typo for a network or for one address, and is refused
    rather than silently widened to 10.0.0.0/8. Raises ValueError for the user."""
    if not isinstance(text, str) or len(text) > MAX_CIDR_TEXT:
        raise ValueError(f"not an IP address or CIDR: {str(text)[:MAX_CIDR_TEXT]!r}")
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"not an IP address or CIDR: {exc}") from None


# ----- schema types -------------------------------------------------------------------------


class Cidr:
    """A schema field holding an IP network (`parse_cidr`)."""

    __slots__ = ("network",)

    def __init__(self, network: Network) -> None:
        self.network = network

    def __contains__(self, address: object) -> bool:
        return address in self.network

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cidr) and other.network == self.network

    def __hash__(self) -> int:
        return hash(self.network)

    def __repr__(self) -> str:
        return f"Cidr({str(self.network)!r})"


class Secret:
    """A schema field holding a secret by reference (`env:NAME`, `file:PATH`), read when the
    config loads: a reference that cannot be read is a problem at its line. Never printed."""

    __slots__ = ("ref", "value")

    def __init__(self, ref: SecretRef, value: bytes) -> None:
        self.ref = ref
        self.value = value

    def __repr__(self) -> str:
        return f"Secret({self.ref.display()!r})"


def dec_hook(base: Path | None) -> Callable[[type, Any], Any]:
    """msgspec's `dec_hook` for the types above; relative `file:` secrets are read from `base`
    (the config's folder). A ValueError or TypeError becomes a ValidationError at the value's
    path (msgspec adds it), which the loader turns into a line-numbered problem."""

    def hook(type_: type, value: Any) -> Any:
        if type_ is Rate:
            return parse_rate(value)
        if type_ is Cidr:
            return Cidr(parse_cidr(value))
        if type_ is Secret:
            if not isinstance(value, str):
                raise TypeError("a secret reference is env:NAME or file:PATH")
            try:
                ref = parse_secret_ref(value)
                return Secret(ref, read_secret(ref, base))
            except SecretError as exc:
                raise ValueError(str(exc)) from None
        raise NotImplementedError(f"no config type {type_.__name__}")

    return hook


_SCHEMAS: dict[type, dict[str, Any]] = {
    Rate: {
        "type": "string",
        "pattern": r"^\d{1,10}/(\d+(\.\d+)?)?[smhd]$",
        "description": "events per period: 10/s, 1000/m, 5/h, 100/d, 100/10s",
    },
    Cidr: {"type": "string", "description": "an IP network or address: 10.0.0.0/8, 2001:db8::/32"},
    Secret: {
        "type": "string",
        "pattern": "^(env|file):.+$",
        "description": "a secret by reference: env:NAME or file:PATH",
    },
}


def schema_hook(type_: type) -> dict[str, Any]:
    """msgspec's `schema_hook` for the types above (`outwork schema`)."""
    try:
        return dict(_SCHEMAS[type_])
    except KeyError:
        raise NotImplementedError(f"no config type {type_.__name__}") from None
