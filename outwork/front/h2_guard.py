"""Frame-level defences for HTTP/2, applied to the client's bytes before `h2` parses them.

Sans-I/O and pure: bytes and the time (`now`) go in, a `Flood` comes out when the peer spends
more than a budget allows. Only the 9-byte frame headers are read (a frame's payload is
skipped, whole or in pieces), so the cost is O(number of frames) and nothing is buffered but
a partial frame header.

What it stops:
- CONTINUATION floods (CVE-2024-27316 class): `h2` buffers a header block until END_HEADERS
  (up to 64 frames of up to max_frame_size each) before HPACK sees it. Here the block is
  counted as its frame headers arrive, so one that grows past `max_header_list_size` bytes or
  `max_continuation_frames` frames is cut while it is still arriving, before its payload is
  even read.
- Rapid reset (CVE-2023-44487): RST_STREAM frames from the client (and streams the gateway
  refused, counted by the session) per `flood_window`.
- SETTINGS and PING floods: each one costs an ACK the peer may never read.
- Empty-frame floods: empty DATA without END_STREAM, PRIORITY, empty CONTINUATION: work
  without content.
"""

from __future__ import annotations

from outwork.config.config import Http2Config

PREFACE_LENGTH = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", checked by h2
FRAME_HEADER_LENGTH = 9

ENHANCE_YOUR_CALM = 0xB

# Frame types (RFC 9113 6) and flags.
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0, 1, 2, 3, 4
_PING, _CONTINUATION = 6, 9
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4


class Flood(Exception):
    """The peer went beyond a budget: answer GOAWAY with `error_code`, then close."""

    def __init__(self, attack: str, detail: dict[str, int]) -> None:
        super().__init__(attack)
        self.attack = attack  # "rapid_reset", "continuation_flood", ...: metrics and events
        self.error_code = ENHANCE_YOUR_CALM
        self.detail = detail


class RateBudget:
    """At most `limit` events per fixed window of `window` seconds."""

    __slots__ = ("limit", "window", "start", "count")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.start = 0.0
        self.count = 0

    def spend(self, now: float) -> bool:
        """Count one event; False once the window holds more than `limit`."""
        if now - self.start >= self.window:
            self.start = now
            self.count = 0
        self.count += 1
        return self.count <= self.limit


class FrameGuard:
    __slots__ = (
        "config",
        "_preface",
        "_head",
        "_skip",
        "_block_bytes",
        "_block_frames",
        "resets",
        "settings",
        "pings",
        "empty",
    )

    def __init__(self, config: Http2Config) -> None:
        self.config = config
        self._preface = PREFACE_LENGTH
        self._head = bytearray()  # a frame header split across reads
        self._skip = 0  # payload bytes of the current frame not seen yet
        self._block_bytes = -1  # bytes of the pending header block; -1: none pending
        self._block_frames = 0
        window = config.flood_window
        self.resets = RateBudget(config.max_resets, window)
        self.settings = RateBudget(config.max_settings, window)
        self.pings = RateBudget(config.max_pings, window)
        self.empty = RateBudget(config.max_empty_frames, window)

    @property
    def header_block_pending(self) -> bool:
        """A HEADERS frame arrived without END_HEADERS and the block is not finished."""
        return self._block_bytes >= 0

    def feed(self, data: bytes, now: float) -> None:
        """Account for the next bytes from the client. Raises `Flood`."""
        at = 0
        end = len(data)
        if self._preface:
            taken = min(self._preface, end)
            self._preface -= taken
            at = taken
        head = self._head
        while at < end:
            if self._skip:
                taken = min(self._skip, end - at)
                self._skip -= taken
                at += taken
                continue
            wanted = FRAME_HEADER_LENGTH - len(head)
            head += data[at : at + wanted]
            at += wanted
            if len(head) < FRAME_HEADER_LENGTH:
                return
            length = int.from_bytes(head[0:3], "big")
            kind = head[3]
            flags = head[4]
            head.clear()
            self._skip = length
            self._frame(kind, flags, length, now)

    def stream_refused(self, now: float) -> None:
        """The session refused a stream (beyond max_concurrent_streams): as costly as a reset."""
        if not self.resets.spend(now):
            raise Flood("rapid_reset", {"limit": self.resets.limit})

    def _frame(self, kind: int, flags: int, length: int, now: float) -> None:
        config = self.config
        if kind == _HEADERS or kind == _CONTINUATION:
            if kind == _HEADERS:
                self._block_bytes = length
                self._block_frames = 1
            elif self._block_bytes < 0:
                return  # a CONTINUATION out of place: h2 makes it a PROTOCOL_ERROR
            else:
                self._block_bytes += length
                self._block_frames += 1
                if length == 0 and not self.empty.spend(now):
                    raise Flood("empty_frames_flood", {"limit": self.empty.limit})
            if (
                self._block_bytes > config.max_header_list_size
                or self._block_frames > config.max_continuation_frames + 1
            ):
                raise Flood(
                    "continuation_flood",
                    {"block_bytes": self._block_bytes, "frames": self._block_frames},
                )
            if flags & _END_HEADERS:
                self._block_bytes = -1
        elif kind == _RST_STREAM:
            if not self.resets.spend(now):
                raise Flood("rapid_reset", {"limit": self.resets.limit})
        elif kind == _SETTINGS:
            if not flags & _ACK and not self.settings.spend(now):
                raise Flood("settings_flood", {"limit": self.settings.limit})
        elif kind == _PING:
            if not self.pings.spend(now):
                raise Flood("ping_flood", {"limit": self.pings.limit})
        elif kind == _DATA:
            if length == 0 and not flags & _END_STREAM and not self.empty.spend(now):
                raise Flood("empty_frames_flood", {"limit": self.empty.limit})
        elif kind == _PRIORITY:
            if not self.empty.spend(now):
                raise Flood("empty_frames_flood", {"limit": self.empty.limit})
