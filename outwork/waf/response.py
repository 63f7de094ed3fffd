"""What the WAF sees of a response (phases 3 and 4): the status and headers as the upstream sent
them, and the body as far as it was held for inspection."""

from __future__ import annotations

from dataclasses import dataclass

from outwork.waf.request import Pairs


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
    def content_type(self) -> bytes:
        values = self.header_values(b"content-type")
        return values[0] if values else b""
