"""Shared machinery of a TLS 1.3 connection, sans-I/O: bytes in, events and bytes out.

`TLSConnection` owns the record layer, handshake-message reassembly, alerts, heartbeat and
key updates. The handshake itself is driven by a role object (`ServerHandshake` in
`server.py`, `ClientHandshake` in `client.py`) that holds only what its state needs and
installs traffic keys through the connection once it has verified what it must.
"""

from __future__ import annotations

import os
from typing import Final, Protocol

from outwork.native import mypyc_attr
from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription, TLSError, decode_error, unexpected_message
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import MAX_KEY_UPDATES_PER_FLIGHT, Limits
from outwork.tls.enums import ContentType, HandshakeType, HeartbeatMessageType
from outwork.tls.keyschedule import HmacKey, SuiteParams, next_traffic_secret
from outwork.tls.messages import (
    HeartbeatLie,
    HeartbeatMessage,
    KeyUpdate,
    handshake_message,
    pull_heartbeat,
    pull_key_update,
    push_heartbeat,
    push_key_update,
)
from outwork.tls.records import (
    KNOWN_CONTENT_TYPES,
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    RECORD_HEADER,
    RecordCipher,
    frame_plaintext,
    record_overflow,
)

_HANDSHAKE: Final = ContentType.HANDSHAKE
_APPLICATION_DATA: Final = ContentType.APPLICATION_DATA
_ALERT: Final = ContentType.ALERT
_CCS: Final = ContentType.CHANGE_CIPHER_SPEC
_HEARTBEAT: Final = ContentType.HEARTBEAT
# Protected records up to this many bytes are opened from a copy, larger ones from a view of
# the read buffer (_process_records).
_COPIED_RECORD: Final = 4096

# Bytes of undecryptable records skipped after a refused 0-RTT offer (RFC 8446 4.2.10).
MAX_SKIPPED_EARLY_DATA: Final = 1 << 14


class HandshakeRole(Protocol):
    """A role's handshake logic; `handle` gets each complete handshake message."""

    def handle(self, msg_type: int, body: bytes, raw: bytes, now: float) -> None: ...

    def change_cipher_spec(self) -> None:
        """TLS 1.2 only: the peer's ChangeCipherSpec, a real state transition there."""
        ...


class RecordProtection(Protocol):
    """One direction's record protection: TLS 1.3 `RecordCipher` or TLS 1.2's."""

    def seal(self, content_type: int, data: bytes | bytearray | memoryview) -> bytes: ...

    def seal_stream(
        self, content_type: int, data: bytes | bytearray
    ) -> list[bytes] | list[bytearray]: ...

    def sealed_size(self, size: int) -> int:
        """Bytes of the records `seal_into` makes of `size` bytes of content."""
        ...

    def seal_into(self, content_type: int, source: memoryview, out: bytearray) -> int: ...

    def open(self, header: bytes, body: bytes | memoryview) -> tuple[int, bytes]: ...

    def rewind(self) -> None: ...


# The roles (server.py, client.py) and tests subclass it; they stay interpreted.
@mypyc_attr(allow_interpreted_subclasses=True)
class TLSConnection:
    # Thousands of connections sit idle at once: slots, not a dict per connection.
    __slots__ = (
        "_limits", "_in", "_in_wanted", "_hs_buffer", "_hs_fragments", "_out", "_events",
        "_read", "_write", "_suite", "_role", "_established", "_closed", "_peer_closed",
        "_failed", "_ccs_allowed", "_ccs_seen", "_empty_records", "_key_updates",
        "_skip_early_data", "_protected_seen", "_tls12", "_replies",
        "_key_update_reply_pending", "_reading_paused", "now", "heartbeat_enabled",
        "heartbeat_negotiated",
    )  # fmt: skip

    def __init__(self, limits: Limits, heartbeat_enabled: bool) -> None:
        self._limits = limits
        # At most one incomplete record kept between calls (more only while reading is
        # paused), and how long the buffer must grow before a record in it is complete.
        self._in: bytes | bytearray = b""
        self._in_wanted = RECORD_HEADER
        self._hs_buffer = bytearray()
        self._hs_fragments = 0  # records the message being reassembled came in so far
        self._out: list[bytes | bytearray] = []
        self._events: list[ev.Event] = []
        self._read: RecordProtection | None = None
        self._write: RecordProtection | None = None
        self._suite: SuiteParams | None = None
        self._role: HandshakeRole | None = None
        self._established = False
        self._closed = False
        self._peer_closed = False  # the peer sent close_notify; we may still send (TLS 1.3)
        self._failed = False
        self._ccs_allowed = False  # set by the role between ClientHello and the peer's Finished
        self._ccs_seen = False
        self._empty_records = 0
        self._key_updates = 0
        self._skip_early_data = 0
        # A protected record from the peer opened: it has our keys, so from now on its alerts
        # come protected too (RFC 8446 5; OpenSSL reads plaintext alerts only until then).
        self._protected_seen = False
        self._tls12 = False  # set by the role once TLS 1.2 is negotiated
        # Bytes answering the peer's own requests (heartbeat responses, a KeyUpdate reply)
        # queued since the caller last took our output; at `max_pending_output` processing
        # stops (`reading_paused`). At most one KeyUpdate reply is pending at a time.
        self._replies = 0
        self._key_update_reply_pending = False
        self._reading_paused = False
        self.now = 0.0  # the time given with the latest receive_data
        self.heartbeat_enabled = heartbeat_enabled
        self.heartbeat_negotiated = False

    # ----- public API -------------------------------------------------------------------

    @property
    def is_established(self) -> bool:
        return self._established and not self._closed

    @property
    def is_closed(self) -> bool:
        """We closed (or failed): nothing more goes either way."""
        return self._closed

    @property
    def peer_closed(self) -> bool:
        """The peer sent close_notify: nothing more comes from it."""
        return self._peer_closed or self._closed

    @property
    def reading_paused(self) -> bool:
        """Our answers to the peer's requests reached `max_pending_output`, and the rest of
        its input is held unprocessed. Stop reading from the peer; once `data_to_send()` has
        been taken and written, call `receive_data(b"")` to go on with what is held."""
        return self._reading_paused

    def data_to_send(self) -> bytes:
        out = self.data_to_write()
        return out if type(out) is bytes else bytes(out)

    def data_to_write(self) -> bytes | bytearray:
        """As `data_to_send`, for a caller that writes it to a transport at once: one queued
        piece (the usual case: a response sealed into one buffer) is handed over as it is,
        not copied by a join or into bytes."""
        self._replies = 0
        self._key_update_reply_pending = False
        pending = self._out
        if not pending:
            return b""
        out = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        return out

    def send_data(self, data: bytes | bytearray) -> None:
        if not self._established or self._closed or self._write is None:
            raise RuntimeError("send_data before the handshake completed or after close")
        if len(data) <= MAX_PLAINTEXT:
            if data:
                write = self._write
                # Narrowed to the TLS 1.3 class: compiled, a direct call instead of a lookup by
                # name through the Protocol (~300 instructions per response).
                if isinstance(write, RecordCipher):
                    self._out.append(write.seal(_APPLICATION_DATA, data))
                else:
                    self._out.append(write.seal(_APPLICATION_DATA, data))
        else:
            self._out.extend(self._write.seal_stream(_APPLICATION_DATA, data))

    def send_pieces(self, pieces: list[bytes | bytearray | memoryview]) -> None:
        """`send_data` of `pieces` joined (what a callback wrote: a response head and its body).
        Up to 2^14 bytes in all with TLS 1.3, one record whose inner plaintext is made by one
        join (`RecordCipher.seal_joined`). `pieces` is used up (the record layer appends)."""
        write = self._write
        if not self._established or self._closed or write is None:
            raise RuntimeError("send_data before the handshake completed or after close")
        size = 0
        for piece in pieces:
            size += len(piece)
        if size <= MAX_PLAINTEXT and isinstance(write, RecordCipher):
            if size:
                self._out.append(write.seal_joined(_APPLICATION_DATA, pieces))
            return
        self.send_data(b"".join(pieces))

    def sealed_size(self, size: int) -> int:
        """The room `send_data_into` needs for `size` bytes of application data."""
        if self._write is None:
            raise RuntimeError("no write keys before the handshake completed")
        return self._write.sealed_size(size)

    def send_data_into(self, source: memoryview, out: bytearray) -> int:
        """`send_data` for bulk output, with no copy: `source[:-1]` sealed straight into `out`
        (at least `sealed_size(len(source) - 1)` bytes; the caller writes it to the peer and
        owns it). `source` is writable and its last byte spare: the record layer borrows it
        for each record's content type and gives it back (`RecordCipher.seal_into`). Records
        queued before (take them with `data_to_write` first) must go out before these."""
        if not self._established or self._closed or self._write is None:
            raise RuntimeError("send_data before the handshake completed or after close")
        if self._out:
            raise RuntimeError("queued records must be taken before send_data_into")
        return self._write.seal_into(_APPLICATION_DATA, source, out)

    def close(self) -> None:
        if not self._closed:
            self._send_alert(AlertDescription.CLOSE_NOTIFY, fatal=False)
            self._closed = True

    def receive_data(self, data: bytes, now: float = 0.0) -> list[ev.Event]:
        """Feed bytes from the peer; returns what happened. Never raises for peer input."""
        if self._closed or self._peer_closed:
            return []  # nothing the peer sends after its close_notify (or a failure) counts
        self.now = now
        pending = self._in
        if pending:
            if len(pending) + len(data) < self._in_wanted:
                # Still short of the record in progress: appended, not re-copied, so a record
                # trickled in a byte at a time costs O(n), not O(n^2).
                if isinstance(pending, bytes):
                    pending = self._in = bytearray(pending)
                pending += data
                return []
            data = bytes(pending) + data
        self._key_updates = 0
        self._reading_paused = False
        try:
            self._process_records(data, now)
        except TLSError as exc:
            self._fail(exc)
        events = self._events
        self._events = []
        return events

    # ----- for the handshake roles ------------------------------------------------------

    def set_suite(self, params: SuiteParams) -> None:
        self._suite = params

    def use_tls12(self, role: HandshakeRole) -> None:
        """Hand the rest of the handshake to a TLS 1.2 role (after the ClientHello)."""
        self._tls12 = True
        self._role = role

    def install_read_cipher(self, cipher: RecordProtection) -> None:
        if self._hs_buffer:
            raise unexpected_message("handshake message spans a key change")
        self._read = cipher

    def install_write_cipher(self, cipher: RecordProtection) -> None:
        self._write = cipher

    def set_read_secret(self, secret: bytes, prk: HmacKey | None = None) -> None:
        """`prk`: the HmacKey of `secret`, when the caller made one (records.RecordCipher)."""
        # RFC 8446 5.1: handshake messages MUST NOT span key changes.
        assert self._suite is not None
        self.install_read_cipher(RecordCipher(self._suite, secret, prk))

    def set_write_secret(self, secret: bytes, prk: HmacKey | None = None) -> None:
        assert self._suite is not None
        self._write = RecordCipher(self._suite, secret, prk)

    def send_handshake(self, msg_type: HandshakeType, body: bytes) -> bytes:
        """Queue one handshake message under the current write state; returns its bytes
        (type, length, body) for the transcript."""
        message = handshake_message(msg_type, body)
        self.send_handshake_bytes(message)
        return message

    def send_handshake_bytes(self, messages: bytes) -> None:
        if self._write is None:
            self._out.append(frame_plaintext(_HANDSHAKE, messages))
        else:
            self._out.extend(self._write.seal_stream(_HANDSHAKE, messages))

    def send_change_cipher_spec(self) -> None:
        self._out.append(frame_plaintext(_CCS, b"\x01"))

    def allow_change_cipher_spec(self, allowed: bool) -> None:
        self._ccs_allowed = allowed

    def skip_early_data(self, skip: bool = True) -> None:
        """Drop the peer's refused 0-RTT records (up to a cap), or stop dropping them."""
        self._skip_early_data = MAX_SKIPPED_EARLY_DATA if skip else 0

    def complete(self, event: ev.HandshakeComplete) -> None:
        self._established = True
        self._ccs_allowed = False
        self._events.append(event)

    def emit(self, event: ev.Event) -> None:
        self._events.append(event)

    @property
    def limits(self) -> Limits:
        return self._limits

    # ----- record processing ------------------------------------------------------------

    def _process_records(self, buf: bytes, now: float) -> None:
        pos = 0
        end = len(buf)
        view: memoryview | None = None  # made for the first large record only
        max_pending = self._limits.max_pending_output
        try:
            while end - pos >= RECORD_HEADER and not (self._closed or self._peer_closed):
                if self._replies >= max_pending:
                    self._reading_paused = True  # the rest waits until our output is taken
                    break
                content_type = buf[pos]
                length = (buf[pos + 3] << 8) | buf[pos + 4]
                if content_type not in KNOWN_CONTENT_TYPES:
                    raise unexpected_message(f"unknown record content type {content_type}")
                if buf[pos + 1] != 3:
                    raise decode_error("record version is not 3.x")
                if length > MAX_CIPHERTEXT:
                    raise record_overflow(f"record of {length} bytes")
                start = pos + RECORD_HEADER
                if end - start < length:
                    break
                header = buf[pos:start]
                pos = start + length
                read = self._read
                if content_type == _APPLICATION_DATA and self._established and read is not None:
                    # The hot path: one protected record of an established connection.
                    # A small record's ciphertext is cheaper copied than viewed: the
                    # memoryview, its slice and the buffer protocol in `decrypt` cost more
                    # than copying up to a few KiB (callgrind: 1.8k instructions less for a
                    # 1.3 KB record; at 16 KiB the view is 14k cheaper).
                    if length <= _COPIED_RECORD:
                        ciphertext: bytes | memoryview = buf[start:pos]
                    else:
                        if view is None:
                            view = memoryview(buf)
                        ciphertext = view[start:pos]
                    # The TLS 1.3 class: a direct call when compiled (as in send_data).
                    if isinstance(read, RecordCipher):
                        inner_type, content = read.open(header, ciphertext)
                    else:
                        inner_type, content = read.open(header, ciphertext)
                    if inner_type == _APPLICATION_DATA and content and not self._hs_buffer:
                        self._empty_records = 0
                        self._events.append(ev.ApplicationData(content))
                        continue
                    self._on_protected(inner_type, content, now)
                    continue
                self._process_record(content_type, header, buf[start:pos], now)
        finally:
            rest = self._in = buf[pos:]
            if self._reading_paused:
                self._in_wanted = 0  # whole records are held: the next call goes on with them
            elif len(rest) >= RECORD_HEADER:
                self._in_wanted = RECORD_HEADER + ((rest[3] << 8) | rest[4])
            else:
                self._in_wanted = RECORD_HEADER

    def _process_record(self, outer_type: int, header: bytes, fragment: bytes, now: float) -> None:
        if self._hs_buffer and outer_type != _HANDSHAKE and outer_type != _APPLICATION_DATA:
            self._interleaved(outer_type)  # a protected record's inner type: _on_protected
        if outer_type == _CCS:
            self._on_change_cipher_spec(fragment)
            return
        read = self._read
        if self._tls12 and read is not None:
            content_type, content = read.open(header, fragment)
            self._on_protected(content_type, content, now)
            return
        if read is None or outer_type != _APPLICATION_DATA:
            # Unprotected record. Once reading is protected, only CCS (above) and, during the
            # handshake, a plaintext alert from a peer that failed before taking our keys are
            # tolerated; a plaintext heartbeat is inspected for Heartbleed probes first.
            if outer_type == _APPLICATION_DATA and 0 < len(fragment) <= self._skip_early_data:
                # Refused 0-RTT before any key of ours is in use: the client's early data
                # after a first hello we answered with a HelloRetryRequest (RFC 8446 4.2.10).
                self._skip_early_data -= len(fragment)
                return
            if len(fragment) > MAX_PLAINTEXT:
                raise record_overflow("plaintext record longer than 2^14")
            if outer_type == _HEARTBEAT:
                self._on_heartbeat(fragment, encrypted=False)
                if self._established:
                    raise unexpected_message("unprotected heartbeat after the handshake")
                return
            if read is not None and (outer_type != _ALERT or self._protected_seen):
                # Once the peer protects its records only protected alerts count (RFC 8446 5,
                # 6): a plaintext close_notify injected on the path would otherwise end a
                # close-delimited response early, and it would look complete. Before that, a
                # peer that failed before it had our keys can only send a plaintext one.
                raise unexpected_message("unprotected record after the key change")
            self._dispatch(outer_type, fragment, now)
            return
        try:
            content_type, content = read.open(header, fragment)
        except TLSError:
            if self._skip_early_data > 0 and len(fragment) <= self._skip_early_data:
                # A refused 0-RTT flight: drop it, and undo the nonce the failed try used.
                self._skip_early_data -= len(fragment)
                read.rewind()
                return
            raise
        self._skip_early_data = 0
        self._protected_seen = True
        self._on_protected(content_type, content, now)

    def _interleaved(self, content_type: int) -> None:
        raise unexpected_message(
            f"record of type {content_type} between the fragments of a handshake message"
        )

    def _on_protected(self, content_type: int, content: bytes, now: float) -> None:
        if self._hs_buffer and content_type != _HANDSHAKE:
            # RFC 8446 5.1: a handshake message split over records has nothing between them.
            self._interleaved(content_type)
        if content_type == _APPLICATION_DATA and self._established:
            if content:
                self._empty_records = 0
                self._events.append(ev.ApplicationData(content))
            else:
                self._count_empty_record()
            return
        if content_type == _HEARTBEAT:
            self._on_heartbeat(content, encrypted=True)
            return
        if content_type == _CCS:
            raise unexpected_message("change_cipher_spec inside a protected record")
        self._dispatch(content_type, content, now)

    def _count_empty_record(self) -> None:
        self._empty_records += 1
        if self._empty_records > self._limits.max_empty_records:
            raise unexpected_message("too many consecutive empty records")

    def _dispatch(self, content_type: int, content: bytes, now: float) -> None:
        if content_type == _HANDSHAKE:
            if not content:
                raise unexpected_message("zero-length handshake record")
            self._on_handshake_bytes(content, now)
        elif content_type == _ALERT:
            self._on_alert(content)
        elif content_type == _APPLICATION_DATA:
            raise unexpected_message("application data before the handshake completed")
        else:
            raise unexpected_message(f"unexpected record type {content_type}")

    def _on_change_cipher_spec(self, fragment: bytes) -> None:
        # RFC 8446 5: one CCS of value 0x01 may arrive between the first ClientHello and the
        # peer's Finished, unprotected; anything else is an unexpected_message.
        if fragment != b"\x01":
            raise unexpected_message("malformed change_cipher_spec")
        if self._tls12:
            if self._hs_buffer:
                raise unexpected_message("handshake message spans a key change")
            assert self._role is not None
            self._role.change_cipher_spec()
            return
        if not self._ccs_allowed or self._ccs_seen:
            raise unexpected_message("change_cipher_spec not allowed here")
        self._ccs_seen = True

    def _on_handshake_bytes(self, content: bytes, now: float) -> None:
        if self._hs_buffer:
            self._hs_buffer += content
            self._hs_fragments += 1
            if self._hs_fragments > self._limits.max_handshake_fragments:
                raise unexpected_message("handshake message split over too many records")
        else:
            self._hs_buffer = bytearray(content)
            self._hs_fragments = 1
        if len(self._hs_buffer) > self._limits.max_buffered_handshake:
            raise TLSError(AlertDescription.UNEXPECTED_MESSAGE, "too much buffered handshake data")
        while len(self._hs_buffer) >= 4:
            buf = self._hs_buffer
            msg_type = buf[0]
            length = (buf[1] << 16) | (buf[2] << 8) | buf[3]
            cap = self._limits.max_handshake_message
            if msg_type == HandshakeType.CLIENT_HELLO:
                cap = min(cap, self._limits.max_client_hello)
            if length > cap:
                raise TLSError(
                    AlertDescription.ILLEGAL_PARAMETER,
                    f"handshake message type {msg_type} of {length} bytes exceeds {cap}",
                )
            if len(buf) < 4 + length:
                return
            raw = bytes(buf[: 4 + length])
            del buf[: 4 + length]
            self._hs_fragments = 1  # what is left came in the record just read
            if self._established:
                self._on_post_handshake(msg_type, raw[4:])
            else:
                assert self._role is not None
                self._role.handle(msg_type, raw[4:], raw, now)
            if self._closed:
                return

    def _on_post_handshake(self, msg_type: int, body: bytes) -> None:
        if self._tls12:
            # No renegotiation, ever (RFC 5746 answered, renegotiation refused).
            raise TLSError(AlertDescription.NO_RENEGOTIATION, "renegotiation is refused")
        if msg_type == HandshakeType.KEY_UPDATE:
            self._key_updates += 1
            if self._key_updates > MAX_KEY_UPDATES_PER_FLIGHT:
                raise unexpected_message("KeyUpdate flood")
            update = pull_key_update(Reader(body))
            self.key_update_received(update)
            return
        self.post_handshake_message(msg_type, body)

    def change_cipher_spec(self) -> None:
        """Only a TLS 1.2 role gives ChangeCipherSpec a meaning."""
        raise unexpected_message("change_cipher_spec not allowed here")

    def post_handshake_message(self, msg_type: int, body: bytes) -> None:
        """Post-handshake messages other than KeyUpdate; roles override."""
        raise unexpected_message(f"handshake message {msg_type} after the handshake")

    def key_update_received(self, update: KeyUpdate) -> None:
        assert self._suite is not None and isinstance(self._read, RecordCipher)
        self.set_read_secret(next_traffic_secret(self._suite, self._read.secret))
        if update.request_update and not self._key_update_reply_pending:
            # One reply answers every request that arrives before the caller takes it: it
            # follows them all on the wire (RFC 8446 4.6.3). A peer that asks again and again
            # without reading gets one reply per flush, not one per request.
            self._key_update_reply_pending = True
            queued = len(self._out)
            self.update_write_key(request_peer_update=False)
            self._replies += sum(len(record) for record in self._out[queued:])

    def update_write_key(self, request_peer_update: bool) -> None:
        """Send a KeyUpdate under the current key, then switch to the next write key."""
        if not self._established or not isinstance(self._write, RecordCipher) or self._tls12:
            raise RuntimeError("key update needs an established TLS 1.3 connection")
        assert self._suite is not None
        w = Writer()
        push_key_update(w, KeyUpdate(int(request_peer_update)))
        self.send_handshake(HandshakeType.KEY_UPDATE, w.getvalue())
        self.set_write_secret(next_traffic_secret(self._suite, self._write.secret))

    def _on_alert(self, content: bytes) -> None:
        if not content:
            # RFC 8446 5.1: zero-length fragments of alerts MUST NOT be sent; it is a record
            # of the wrong shape, not a malformed alert.
            raise unexpected_message("zero-length alert record")
        if len(content) != 2:
            raise decode_error("alert record is not two bytes")
        level, description = content[0], content[1]
        try:
            desc: AlertDescription | int = AlertDescription(description)
        except ValueError:
            desc = description
        if description == AlertDescription.CLOSE_NOTIFY:
            self._events.append(ev.AlertReceived(desc, fatal=False))
            self._events.append(ev.ConnectionClosed())
            self._peer_closed = True
            if self._tls12 or not self._established:
                # TLS 1.2 (RFC 5246 7.2.1): answer with our close_notify and stop at once.
                self.close()
            # TLS 1.3 (RFC 8446 6.1): this closes the peer's write side only; we may still
            # answer what it sent (a client that half-closes after its request), then close.
            return
        if description == AlertDescription.USER_CANCELED or (
            self._tls12 and level == 1 and description == AlertDescription.NO_RENEGOTIATION
        ):
            self._events.append(ev.AlertReceived(desc, fatal=False))
            return
        # RFC 8446 6: every other alert is fatal whatever level it claims (and in TLS 1.2
        # outwork treats other warnings the same way: nothing it would go on after).
        self._events.append(ev.AlertReceived(desc, fatal=True))
        self._events.append(ev.ConnectionClosed())
        self._closed = True

    # ----- heartbeat (RFC 6520) ---------------------------------------------------------

    def _on_heartbeat(self, content: bytes, encrypted: bool) -> None:
        """Every heartbeat is inspected; a lying payload_length is a Heartbleed probe, never
        echoed. Only a well-formed request, inside the session, with heartbeat negotiated,
        gets an answer, and the answer is built from the bytes that really arrived."""
        try:
            message = pull_heartbeat(content)
        except HeartbeatLie as lie:
            self._events.append(
                ev.HeartbleedProbe(lie.claimed, lie.actual, encrypted, self.heartbeat_enabled)
            )
            if not self.heartbeat_enabled:
                raise unexpected_message("heartbeat is not enabled") from None
            return  # RFC 6520 4: discarded silently
        if not self.heartbeat_enabled:
            raise unexpected_message("heartbeat is not enabled")
        if not (encrypted and self._established and self.heartbeat_negotiated):
            if not self.heartbeat_negotiated:
                raise unexpected_message("heartbeat was not negotiated")
            return  # during the handshake: not answered
        if message.type != HeartbeatMessageType.REQUEST:
            return  # responses to requests we never sent, unknown types: discarded silently
        assert self._write is not None
        response = push_heartbeat(
            HeartbeatMessage(HeartbeatMessageType.RESPONSE, message.payload), os.urandom(16)
        )
        record = self._write.seal(_HEARTBEAT, response)
        self._out.append(record)
        self._replies += len(record)
        self._events.append(ev.HeartbeatAnswered(len(message.payload)))

    def send_heartbeat_request(self, payload: bytes) -> None:
        """Client-side helper (and for tests): a well-formed heartbeat request."""
        if not self._established or self._write is None:
            raise RuntimeError("heartbeat before the handshake completed")
        request = push_heartbeat(
            HeartbeatMessage(HeartbeatMessageType.REQUEST, payload), os.urandom(16)
        )
        self._out.append(self._write.seal(_HEARTBEAT, request))

    def send_protected(self, content_type: int, data: bytes) -> None:
        """Protect and queue `data` under the current write key, split into records."""
        assert self._write is not None
        self._out.extend(self._write.seal_stream(content_type, data))

    def send_raw_record(self, content_type: int, content: bytes) -> None:
        """Protect and queue arbitrary content (the scanner and tests craft probes with it)."""
        if self._write is None:
            self._out.append(frame_plaintext(content_type, content))
        else:
            self._out.append(self._write.seal(content_type, content))

    # ----- failure ----------------------------------------------------------------------

    def _send_alert(self, description: AlertDescription, fatal: bool) -> None:
        alert = bytes((2 if fatal else 1, description))
        if self._write is None:
            self._out.append(frame_plaintext(_ALERT, alert))
        else:
            self._out.append(self._write.seal(_ALERT, alert))

    def _fail(self, error: TLSError) -> None:
        if self._closed:
            return
        self._failed = True
        self._send_alert(error.alert, fatal=True)
        self._closed = True
        self._events.append(ev.ConnectionFailed(error.alert, error.reason))
