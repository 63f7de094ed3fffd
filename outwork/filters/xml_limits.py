"""A streaming XML checker: well-formedness through expat, fed chunk by chunk, with no DTD.

    checker = XmlChecker(XmlLimits(max_depth=20, max_size=1 << 20))
    checker.feed(chunk)   # raises XmlViolation at the first problem expat reports
    checker.finish()      # the body ended: raises XmlViolation unless it was one document

No document type declaration is accepted, ever: a DOCTYPE is where entity declarations live,
so refusing it at its start rules out the billion laughs (nested internal entities), external
entities (XXE: `SYSTEM "file:///etc/passwd"`), parameter entities and external DTD fetches,
whatever the backend's parser would have done with them. Without a DTD only the five
predefined entities and character references exist; any other `&name;` is not well-formed.
`max_depth` bounds the elements open at once; `max_size` the bytes of the body (expat keeps
an unfinished token in its buffer, so this also bounds its memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn
from xml.parsers import expat


class XmlViolation(Exception):
    """`limit`: `max_depth`, `max_size`, `dtd` (a DOCTYPE, entity or notation declaration, an
    external entity reference) or `syntax` (not well-formed)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.message = message


@dataclass(frozen=True, slots=True)
class XmlLimits:
    max_depth: int = 20
    max_size: int | None = 1 << 20


class XmlChecker:
    """One body's check. Not reusable: after a violation, every call raises it again."""

    __slots__ = ("limits", "_parser", "_depth", "_size", "_failed")

    def __init__(self, limits: XmlLimits) -> None:
        self.limits = limits
        self._depth = 0
        self._size = 0
        self._failed: XmlViolation | None = None
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._declaration
        parser.UnparsedEntityDeclHandler = self._declaration
        parser.NotationDeclHandler = self._declaration
        parser.ExternalEntityRefHandler = self._external_entity
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        self._parser: Any = parser

    @property
    def size(self) -> int:
        return self._size

    def feed(self, data: bytes) -> None:
        self._size += len(data)
        max_size = self.limits.max_size
        if max_size is not None and self._size > max_size and self._failed is None:
            self._fail(XmlViolation("max_size", f"body over {max_size} bytes"))
        self._parse(data, False)

    def finish(self) -> None:
        self._parse(b"", True)

    def _parse(self, data: bytes, final: bool) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            reason = expat.errors.messages[exc.code]
            self._fail(XmlViolation("syntax", f"not well-formed XML: {reason}"))
        except XmlViolation as exc:
            self._fail(exc)
        except (LookupError, ValueError) as exc:
            # pyexpat asks Python's codecs for an encoding it does not know itself: one they do
            # not know either (LookupError), or a multi-byte one expat cannot take (ValueError).
            self._fail(XmlViolation("syntax", f"an encoding that cannot be read: {exc}"))

    def _fail(self, violation: XmlViolation) -> NoReturn:
        self._failed = violation
        self._parser = None  # its handlers refer to this checker: drop the cycle
        raise violation

    # Handlers: expat passes their exceptions out of Parse.
    def _doctype(self, *args: Any) -> None:
        raise XmlViolation("dtd", "a document type declaration (DOCTYPE)")

    def _declaration(self, *args: Any) -> None:
        raise XmlViolation("dtd", "an entity or notation declaration")

    def _external_entity(self, *args: Any) -> int:
        raise XmlViolation("dtd", "an external entity reference")

    def _start(self, name: str, attributes: Any) -> None:
        self._depth += 1
        if self._depth > self.limits.max_depth:
            raise XmlViolation("max_depth", f"more than {self.limits.max_depth} levels of nesting")

    def _end(self, name: str) -> None:
        self._depth -= 1
