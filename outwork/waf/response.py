"""What the WAF sees of a response (phases 3 and 4): the status and headers as the upstream sent
them, and the body as far as it was held for inspection."""

from __future__ import annotations

from dataclasses import dataclass

from outwork.waf.request import Pairs

NULL_MIME_TYPE = b"null"  # a response without Content-Type, in a list of MIME types


@dataclass(slots=True)
class WafResponse:
    status: int
    protocol: bytes  # b"HTTP/1.1": what the upstream spoke
    headers: Pairs  # names as sent
    content_length: int = -1  # -1: not known from the head (chunked, close-delimited)
    # RESPONSE_BODY: what was held for phase 4; None until then, and for a body not inspected.
    body: bytes | None = None
    body_complete: bool = True  # False: only the first `response_body_limit` bytes are in `body`

    def header_values(self, name: bytes) -> list[bytes]:
        lower = name.lower()
        return [v for n, v in self.headers if n.lower() == lower]

    @property
    def content_type(self) -> bytes | None:
        """RESPONSE_CONTENT_TYPE: the first Content-Type as sent; None when the response has
        none (ModSecurity 2 then has no such variable, not an empty one)."""
        values = self.header_values(b"content-type")
        return values[0] if values else None

    @property
    def mime_type(self) -> bytes:
        """What `response_mime_types` (SecResponseBodyMimeType) is matched against: the type
        without its parameters, lower-case; `null` for a response with no Content-Type, as
        ModSecurity 2's output filter names it (so that a list with `null` covers it). An
        empty Content-Type is b"" and matches nothing."""
        content_type = self.content_type
        if content_type is None:
            return NULL_MIME_TYPE
        return content_type.split(b";", 1)[0].strip().lower()
