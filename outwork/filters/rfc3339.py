"""RFC 3339 timestamps (`2026-12-06T22:00:00Z`) as seconds since the epoch: the revocation
instant and an API key's `created`.

Only the RFC's own form is taken (a `T` or space between date and time, seconds present, an
offset `Z` or `+hh:mm` required): a time without its zone would mean whatever the host's zone
is, and a revocation that moves with the host's clock settings revokes the wrong credentials.
"""

from __future__ import annotations

import re
from datetime import datetime

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch. Raises ValueError with a message for the user."""
    if not _RFC3339.match(text):
        example = "2026-12-06T22:00:00Z"
        raise ValueError(f"invalid timestamp {text!r} (expected RFC 3339, e.g. {example})")
    date, time = text[:10], text[11:]
    if time[-1] in "Zz":
        time = time[:-1] + "+00:00"
    whole, dot, rest = time.partition(".")
    if dot:  # fromisoformat takes at most microseconds: drop the digits beyond
        digits = rest[: len(rest) - 6]
        time = whole + "." + digits[:6].ljust(6, "0") + rest[len(rest) - 6 :]
    try:
        return datetime.fromisoformat(f"{date}T{time}").timestamp()
    except ValueError:
        raise ValueError(f"invalid timestamp {text!r}: no such date or time") from None
