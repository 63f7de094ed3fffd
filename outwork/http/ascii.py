"""Single ASCII bytes as ints, for membership tests on bytes.

`SEMICOLON in data` is one memchr. With a one-byte bytes object as the needle, CPython 3.11
does the same search only after trying the needle as an int: it formats the TypeError that
attempt raises and clears it, about 2,000 instructions a test, several per request on the hot
path (tests/test_native.py keeps them out of the compiled modules).
"""

from __future__ import annotations

from typing import Final

NUL: Final = 0x00
LF: Final = 0x0A
CR: Final = 0x0D
QUOTE: Final = 0x22
HASH: Final = 0x23
PERCENT: Final = 0x25
AMPERSAND: Final = 0x26
PLUS: Final = 0x2B
COMMA: Final = 0x2C
SLASH: Final = 0x2F
SEMICOLON: Final = 0x3B
EQUALS: Final = 0x3D
QUESTION_MARK: Final = 0x3F
OPEN_BRACKET: Final = 0x5B
BACKSLASH: Final = 0x5C
UNDERSCORE: Final = 0x5F
OPEN_BRACE: Final = 0x7B
