"""libinjection (@detectSQLi, @detectXSS), from the C library ModSecurity itself links.

No Python binding of libinjection has a wheel on PyPI for CPython 3.11 (libinjection-python,
pylibinjection and libinjection-wheel are source-only, and CI has no compiler). Debian's
`libmodsecurity3` (ModSecurity v3) builds libinjection in and exports its two entry points,
`libinjection_sqli` and `libinjection_xss`; ctypes calls them there, so the verdicts are
libinjection's own, the version ModSecurity ships. `scripts/debian-packages.txt` lists the
package; where the library is missing the operators refuse to build (a rule set that needs
them does not load) rather than silently never match.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from functools import lru_cache

LIBRARY_NAMES = ("libmodsecurity.so.3", "libmodsecurity.so")
DEBIAN_PACKAGE = "libmodsecurity3"
FINGERPRINT_SIZE = 8  # libinjection_sqli writes at most 5 tokens and a NUL
# Its buffer's type, made once (`ctypes.create_string_buffer` is interpreted code around the
# same array: measured, 0.42 us a call against 0.27). A fresh buffer per call still: the
# foreign call releases the GIL, so a shared one could be written by another thread's call.
_Fingerprint = ctypes.c_char * FINGERPRINT_SIZE


class LibinjectionMissing(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Libinjection:
    library: ctypes.CDLL

    def sqli(self, value: bytes) -> bytes | None:
        """The SQLi fingerprint (e.g. b"s&sos") when libinjection finds SQL injection."""
        fingerprint = _Fingerprint()
        if self.library.libinjection_sqli(value, len(value), fingerprint):
            return fingerprint.value
        return None

    def xss(self, value: bytes) -> bool:
        return bool(self.library.libinjection_xss(value, len(value)))


@lru_cache(maxsize=1)
def load() -> Libinjection:
    """The library, loaded once; LibinjectionMissing names the package to install."""
    for name in LIBRARY_NAMES:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            sqli = library.libinjection_sqli
            xss = library.libinjection_xss
        except AttributeError:
            continue
        sqli.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p)
        sqli.restype = ctypes.c_int
        xss.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
        xss.restype = ctypes.c_int
        return Libinjection(library)
    raise LibinjectionMissing(
        f"libinjection not found ({', '.join(LIBRARY_NAMES)}): install the Debian package "
        f"{DEBIAN_PACKAGE}"
    )
