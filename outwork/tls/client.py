"""Client role of the TLS 1.3 handshake, for upstream TLS and the scanner."""

from __future__ import annotations

import hmac
import ipaddress
import os
from enum import Enum, auto

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from outwork.tls import events as ev
from outwork.tls.alerts import (
    AlertDescription,
    TLSError,
    decode_error,
    handshake_failure,
    illegal_parameter,
    unexpected_message,
)
from outwork.tls.base import TLSConnection
from outwork.tls.client12 import Tls12ClientHandshake
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import ClientConfig
from outwork.tls.enums import (
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    ProtocolVersion,
)
from outwork.tls.extensions import (
    pull_alpn,
    pull_cookie,
    pull_heartbeat_mode,
    pull_uint16_list_ext,
    push_alpn,
    push_cookie,
    push_key_share_client,
    push_pre_shared_key_client,
    push_server_name,
)
from outwork.tls.groups import KeyShare
from outwork.tls.keyschedule import SUITES, KeySchedule, SuiteParams, Transcript
from outwork.tls.messages import (
    Certificate,
    CertificateEntry,
    CertificateVerify,
    ClientHello,
    Extension,
    ServerHello,
    handshake_message,
    pull_certificate,
    pull_certificate_request,
    pull_certificate_verify,
    pull_encrypted_extensions,
    pull_finished,
    pull_new_session_ticket,
    pull_server_hello,
    push_certificate,
    push_certificate_verify,
    push_client_hello,
    push_uint16_list,
)
from outwork.tls.server12 import DOWNGRADE_SENTINEL_TLS12
from outwork.tls.signing import (
    TLS12_SCHEMES,
    TLS13_SCHEMES,
    certificate_verify_content,
    sign_with,
    verify_signature,
)
from outwork.tls.tickets import ClientSession
from outwork.tls.tls12 import SUITES12
from outwork.tls.verify import load_chain, verify_server_chain

# Extensions a ServerHello / HelloRetryRequest / EncryptedExtensions may carry (RFC 8446 4.2).
_SERVER_HELLO_EXTENSIONS = {
    ExtensionType.SUPPORTED_VERSIONS,
    ExtensionType.KEY_SHARE,
    ExtensionType.PRE_SHARED_KEY,
}
_RETRY_EXTENSIONS = {
    ExtensionType.SUPPORTED_VERSIONS,
    ExtensionType.KEY_SHARE,
    ExtensionType.COOKIE,
}
_ENCRYPTED_EXTENSIONS = {
    ExtensionType.SERVER_NAME,
    ExtensionType.MAX_FRAGMENT_LENGTH,
    ExtensionType.SUPPORTED_GROUPS,
    ExtensionType.HEARTBEAT,
    ExtensionType.ALPN,
    ExtensionType.RECORD_SIZE_LIMIT,
    ExtensionType.EARLY_DATA,
}
_TLS12_SERVER_HELLO_EXTENSIONS = {
    ExtensionType.RENEGOTIATION_INFO,
    ExtensionType.EXTENDED_MASTER_SECRET,
    ExtensionType.EC_POINT_FORMATS,
    ExtensionType.ALPN,
    ExtensionType.HEARTBEAT,
    ExtensionType.SERVER_NAME,
    ExtensionType.SESSION_TICKET,
}
MAX_TICKETS = 8  # NewSessionTickets accepted per connection before it counts as a flood


class ClientState(Enum):
    START = auto()
    WAIT_SERVER_HELLO = auto()
    WAIT_ENCRYPTED_EXTENSIONS = auto()
    WAIT_CERTIFICATE = auto()
    WAIT_CERTIFICATE_VERIFY = auto()
    WAIT_FINISHED = auto()
    TLS12 = auto()  # a Tls12ClientHandshake drives the rest
    CONNECTED = auto()


class ClientConnection(TLSConnection):
    def __init__(
        self,
        config: ClientConfig,
        server_name: str | None = None,
        session: ClientSession | None = None,
    ) -> None:
        super().__init__(config.limits, config.heartbeat)
        if config.verify and not server_name:
            raise ValueError("a verifying client needs the server name (or IP) to check")
        self._config = config
        self._role = self
        self.server_name = server_name
        self.state = ClientState.START
        self._random = os.urandom(32)
        self._session_id = os.urandom(32)  # middlebox compatibility mode (RFC 8446 D.4)
        self._shares: dict[int, KeyShare] = {}
        self._cookie: bytes | None = None
        self._retried = False
        self._first_hello_raw = b""
        self._transcript: Transcript | None = None
        self._schedule: KeySchedule | None = None
        self._params: SuiteParams | None = None
        self._group: NamedGroup | None = None
        self._server_hs = b""
        self._client_hs = b""
        self._alpn: str | None = None
        self._chain: list[x509.Certificate] = []
        self._tickets = 0
        self._offered_session = session
        self._certificate_request: tuple[bytes, tuple[int, ...]] | None = None
        self._early_data_offered = False
        self._offered_extensions: frozenset[int] = frozenset()  # in our latest ClientHello
        self._sent_change_cipher_spec = False
        self.early_data_accepted: bool | None = None  # known after EncryptedExtensions
        self._psk_offered = False  # a TLS 1.3 PSK went into the ClientHello
        self._resumed = False
        self._resumption_master = b""
        self._now = 0.0
        self.sessions: list[ClientSession] = []  # tickets received, newest last
        self.peer_certificates: tuple[x509.Certificate, ...] = ()
        self.negotiated: ev.HandshakeComplete | None = None

    def start_handshake(self, now: float = 0.0) -> None:
        if self.state is not ClientState.START:
            raise RuntimeError("handshake already started")
        for group in self._config.key_share_groups:
            self._shares[group] = KeyShare(group)
        self._now = now
        session = self._offered_session
        if session is not None and not session.usable(now, self.server_name):
            self._offered_session = None
        self._first_hello_raw = self._send_client_hello(None)
        if self._early_data_offered:
            self._send_early_data()
        self.state = ClientState.WAIT_SERVER_HELLO

    def _send_early_data(self) -> None:
        """0-RTT: the configured data under the early traffic key, right after the hello."""
        session, data = self._offered_session, self._config.early_data
        assert session is not None and data is not None
        params = SUITES[session.cipher_suite]
        schedule = KeySchedule(params, session.secret)
        transcript = Transcript(params.hash_name)
        transcript.update(self._first_hello_raw)
        self.set_suite(params)
        self.send_change_cipher_spec()
        self._sent_change_cipher_spec = True
        self.set_write_secret(
            schedule.derive_secret(schedule.early_secret, b"c e traffic", transcript.digest())
        )
        self.send_protected(ContentType.APPLICATION_DATA, data)

    def _send_client_hello(self, transcript: Transcript | None) -> bytes:
        """Queue a ClientHello and return its bytes. `transcript` is the handshake so far
        (after a HelloRetryRequest), which a PSK binder covers."""
        c = self._config
        session = self._offered_session
        extensions: list[Extension] = []
        if self.server_name and not _is_ip_address(self.server_name):
            extensions.append((ExtensionType.SERVER_NAME, push_server_name(self.server_name)))
        offer_tls12 = c.min_version <= ProtocolVersion.TLS12
        offer_tls13 = c.max_version >= ProtocolVersion.TLS13
        versions = (b"\x03\x04" if offer_tls13 else b"") + (b"\x03\x03" if offer_tls12 else b"")
        extensions.append((ExtensionType.SUPPORTED_VERSIONS, bytes((len(versions),)) + versions))
        if offer_tls12:
            extensions.append((ExtensionType.EXTENDED_MASTER_SECRET, b""))
            extensions.append((ExtensionType.RENEGOTIATION_INFO, b"\x00"))
            extensions.append((ExtensionType.EC_POINT_FORMATS, b"\x01\x00"))
            ticket = b""
            if session is not None and session.version == ProtocolVersion.TLS12:
                ticket = session.ticket
            extensions.append((ExtensionType.SESSION_TICKET, ticket))
        w = Writer()
        push_uint16_list(w, tuple(c.groups))
        extensions.append((ExtensionType.SUPPORTED_GROUPS, w.getvalue()))
        w = Writer()
        schemes = c.signature_schemes or tuple(
            sorted(TLS12_SCHEMES if offer_tls12 else TLS13_SCHEMES)
        )
        push_uint16_list(w, tuple(schemes))
        extensions.append((ExtensionType.SIGNATURE_ALGORITHMS, w.getvalue()))
        if offer_tls13:
            shares = tuple((g, s.share) for g, s in self._shares.items())
            extensions.append((ExtensionType.KEY_SHARE, push_key_share_client(shares)))
        if c.alpn_protocols:
            extensions.append((ExtensionType.ALPN, push_alpn(c.alpn_protocols)))
        if c.heartbeat:
            extensions.append((ExtensionType.HEARTBEAT, b"\x01"))
        if self._cookie is not None:
            extensions.append((ExtensionType.COOKIE, push_cookie(self._cookie)))
        psk_params = self._psk_params(transcript)
        if offer_tls13:
            # psk_dhe_ke only: tickets are welcome, resumption keeps forward secrecy.
            extensions.append((ExtensionType.PSK_KEY_EXCHANGE_MODES, b"\x01\x01"))
        if (
            offer_tls13
            and session is not None
            and psk_params is not None
            and c.early_data is not None
            and 0 < len(c.early_data) <= session.max_early_data
            and transcript is None  # never after a HelloRetryRequest (RFC 8446 4.2.10)
        ):
            extensions.append((ExtensionType.EARLY_DATA, b""))
            self._early_data_offered = True
        if offer_tls13 and session is not None and psk_params is not None:
            placeholder = bytes(psk_params.hash_length)
            identity = ((session.ticket, session.obfuscated_age(self._now)),)
            extensions.append(
                (ExtensionType.PRE_SHARED_KEY, push_pre_shared_key_client(identity, (placeholder,)))
            )
        suites = (tuple(c.cipher_suites) if offer_tls13 else ()) + (
            tuple(c.cipher_suites_tls12) if offer_tls12 else ()
        )
        self._offered_extensions = frozenset(t for t, _ in extensions)
        hello = ClientHello(
            ProtocolVersion.TLS12,
            self._random,
            self._session_id,
            suites,
            b"\x00",
            tuple(extensions),
        )
        w = Writer()
        push_client_hello(w, hello)
        message = handshake_message(HandshakeType.CLIENT_HELLO, w.getvalue())
        if offer_tls13 and session is not None and psk_params is not None:
            message = self._bind_psk(message, session, psk_params, transcript)
            self._psk_offered = True
        self.send_handshake_bytes(message)
        return message

    def _psk_params(self, transcript: Transcript | None) -> SuiteParams | None:
        """The suite parameters a TLS 1.3 session's PSK is bound to, if it can be offered."""
        session = self._offered_session
        if session is None or session.version != ProtocolVersion.TLS13:
            return None
        params = SUITES.get(session.cipher_suite)
        if params is None or (transcript is not None and transcript.hash_name != params.hash_name):
            return None
        return params

    def _bind_psk(
        self,
        message: bytes,
        session: ClientSession,
        params: SuiteParams,
        transcript: Transcript | None,
    ) -> bytes:
        """Replace the placeholder binder at the end of the ClientHello (RFC 8446 4.2.11.2)."""
        binders_length = 2 + 1 + params.hash_length
        truncated = message[:-binders_length]
        prefix = transcript or Transcript(params.hash_name)
        schedule = KeySchedule(params, session.secret)
        binder = schedule.finished_verify_data(schedule.binder_key(), prefix.digest_with(truncated))
        return truncated + (1 + len(binder)).to_bytes(2, "big") + bytes((len(binder),)) + binder

    # ----- dispatch -----------------------------------------------------------------------

    def handle(self, msg_type: int, body: bytes, raw: bytes, now: float) -> None:
        expected = {
            ClientState.WAIT_SERVER_HELLO: HandshakeType.SERVER_HELLO,
            ClientState.WAIT_ENCRYPTED_EXTENSIONS: HandshakeType.ENCRYPTED_EXTENSIONS,
            ClientState.WAIT_CERTIFICATE: HandshakeType.CERTIFICATE,
            ClientState.WAIT_CERTIFICATE_VERIFY: HandshakeType.CERTIFICATE_VERIFY,
            ClientState.WAIT_FINISHED: HandshakeType.FINISHED,
        }.get(self.state)
        if (
            self.state is ClientState.WAIT_CERTIFICATE
            and msg_type == HandshakeType.CERTIFICATE_REQUEST
            and self._certificate_request is None
        ):
            self._on_certificate_request(body, raw)
            return
        if expected is None or msg_type != expected:
            raise unexpected_message(f"handshake message {msg_type} in state {self.state.name}")
        if self.state is ClientState.WAIT_SERVER_HELLO:
            self._on_server_hello(body, raw)
        elif self.state is ClientState.WAIT_ENCRYPTED_EXTENSIONS:
            self._on_encrypted_extensions(body, raw)
        elif self.state is ClientState.WAIT_CERTIFICATE:
            self._on_certificate(body, raw)
        elif self.state is ClientState.WAIT_CERTIFICATE_VERIFY:
            self._on_certificate_verify(body, raw, now)
        else:
            self._on_finished(body, raw)

    def post_handshake_message(self, msg_type: int, body: bytes) -> None:
        if msg_type == HandshakeType.NEW_SESSION_TICKET:
            self._tickets += 1
            if self._tickets > MAX_TICKETS:
                raise unexpected_message("too many NewSessionTickets")
            ticket = pull_new_session_ticket(Reader(body))
            assert self._schedule is not None and self._params is not None
            max_early_data = 0
            for ext_type, ext_body in ticket.extensions:
                if ext_type == ExtensionType.EARLY_DATA:
                    r = Reader(ext_body)
                    max_early_data = r.uint32()
                    r.expect_end("early_data")
            psk = self._schedule.resumption_psk(self._resumption_master, ticket.nonce)
            self.sessions.append(
                ClientSession(
                    version=ProtocolVersion.TLS13,
                    cipher_suite=self._params.suite,
                    secret=psk,
                    ticket=ticket.ticket,
                    received_at=self.now,
                    lifetime_s=min(ticket.lifetime, 7 * 24 * 3600),
                    age_add=ticket.age_add,
                    extended_master_secret=True,
                    server_name=self.server_name or "",
                    max_early_data=max_early_data,
                )
            )
            return
        super().post_handshake_message(msg_type, body)

    # ----- ServerHello / HelloRetryRequest --------------------------------------------------

    def _on_server_hello(self, body: bytes, raw: bytes) -> None:
        hello = pull_server_hello(Reader(body))
        extensions = dict(hello.extensions)
        if ExtensionType.SUPPORTED_VERSIONS not in extensions:
            self._on_server_hello_tls12(hello, raw)
            return
        version = extensions.get(ExtensionType.SUPPORTED_VERSIONS)
        if version != b"\x03\x04" or self._config.max_version < ProtocolVersion.TLS13:
            # RFC 8446 4.2.1: a version we did not offer, or one below TLS 1.3.
            raise illegal_parameter("server selected a version we did not offer")
        allowed = _RETRY_EXTENSIONS if hello.is_hello_retry_request else _SERVER_HELLO_EXTENSIONS
        for ext_type in extensions:
            # RFC 8446 4.2: an answer to nothing we sent is unsupported_extension (the cookie
            # of a retry is the server's to start); one we sent but that has no place in this
            # message is illegal_parameter.
            offered = ext_type in self._offered_extensions
            if ext_type not in allowed and offered:
                raise illegal_parameter(f"extension {ext_type} does not belong in ServerHello")
            if ext_type not in allowed or not (offered or ext_type == ExtensionType.COOKIE):
                raise TLSError(
                    AlertDescription.UNSUPPORTED_EXTENSION, f"extension {ext_type} never offered"
                )
        if hello.legacy_version != ProtocolVersion.TLS12:
            raise illegal_parameter("ServerHello legacy_version is not 0x0303")
        if hello.legacy_session_id_echo != self._session_id:
            raise illegal_parameter("ServerHello does not echo our session id")
        if hello.legacy_compression_method != 0:
            raise illegal_parameter("ServerHello compression method is not null")
        if hello.cipher_suite not in self._config.cipher_suites:
            raise illegal_parameter("server selected a cipher suite we did not offer")
        params = SUITES[hello.cipher_suite]
        if self._params is not None and params is not self._params:
            raise illegal_parameter("ServerHello cipher suite differs from the retry's")
        self._params = params
        self.set_suite(params)
        if hello.is_hello_retry_request:
            self._on_hello_retry_request(hello, extensions, raw)
            return
        key_share = extensions.get(ExtensionType.KEY_SHARE)
        if key_share is None:
            raise TLSError(AlertDescription.MISSING_EXTENSION, "ServerHello without key_share")
        r = Reader(key_share)
        group = r.uint16()
        server_share = r.opaque(2, 1)
        r.expect_end("key_share")
        share = self._shares.get(group)
        if share is None:
            raise illegal_parameter("server key share for a group we did not send")
        shared_secret = share.shared_secret(server_share)
        self._shares.clear()
        self._group = NamedGroup(group)
        psk = None
        selected = extensions.get(ExtensionType.PRE_SHARED_KEY)
        if selected is not None:
            session = self._offered_session
            if not self._psk_offered or session is None or selected != b"\x00\x00":
                raise illegal_parameter("server selected a PSK we did not offer")
            if SUITES[session.cipher_suite].hash_name != params.hash_name:
                raise illegal_parameter("server selected a PSK with another suite hash")
            psk = session.secret
            self._resumed = True

        transcript = self._transcript or Transcript(params.hash_name)
        if self._transcript is None:
            transcript.update(self._first_hello_raw)
        transcript.update(raw)
        schedule = KeySchedule(params, psk)
        schedule.set_shared_secret(shared_secret)
        self._client_hs, self._server_hs = schedule.handshake_traffic_secrets(transcript.digest())
        self.set_read_secret(self._server_hs)
        self.allow_change_cipher_spec(True)
        self._transcript = transcript
        self._schedule = schedule
        self.state = ClientState.WAIT_ENCRYPTED_EXTENSIONS

    def _on_server_hello_tls12(self, hello: ServerHello, raw: bytes) -> None:
        c = self._config
        if c.min_version > ProtocolVersion.TLS12 or hello.legacy_version != ProtocolVersion.TLS12:
            raise TLSError(AlertDescription.PROTOCOL_VERSION, "server did not select TLS 1.3")
        if self._retried:
            raise illegal_parameter("TLS 1.2 ServerHello after a HelloRetryRequest")
        if c.max_version >= ProtocolVersion.TLS13 and hello.random[-8:] == DOWNGRADE_SENTINEL_TLS12:
            # RFC 8446 4.1.3: the server supports TLS 1.3; something removed it from our offer.
            raise illegal_parameter("TLS 1.3 downgrade sentinel in a TLS 1.2 ServerHello")
        if hello.cipher_suite not in c.cipher_suites_tls12:
            raise illegal_parameter("server selected a cipher suite we did not offer")
        if hello.legacy_compression_method != 0:
            raise illegal_parameter("ServerHello compression method is not null")
        extensions = dict(hello.extensions)
        if not set(extensions) <= _TLS12_SERVER_HELLO_EXTENSIONS & self._offered_extensions:
            raise TLSError(
                AlertDescription.UNSUPPORTED_EXTENSION, "unexpected ServerHello extension"
            )
        renegotiation_info = extensions.get(ExtensionType.RENEGOTIATION_INFO)
        if renegotiation_info is not None and renegotiation_info != b"\x00":
            raise handshake_failure("non-empty renegotiation_info in an initial handshake")
        ems = ExtensionType.EXTENDED_MASTER_SECRET in extensions
        if c.require_ems and not ems:
            raise handshake_failure("server does not support extended master secret")
        alpn = None
        if ExtensionType.ALPN in extensions:
            names = pull_alpn(extensions[ExtensionType.ALPN])
            if len(names) != 1 or names[0] not in c.alpn_protocols:
                raise illegal_parameter("server selected an ALPN protocol we did not offer")
            alpn = names[0]
        if ExtensionType.HEARTBEAT in extensions:
            pull_heartbeat_mode(extensions[ExtensionType.HEARTBEAT])
            self.heartbeat_negotiated = c.heartbeat
        suite = SUITES12[hello.cipher_suite]
        transcript = Transcript(suite.hash_name, keep_messages=c.client_certificate is not None)
        transcript.update(self._first_hello_raw)
        transcript.update(raw)
        self._shares.clear()
        session = self._offered_session
        resumed = None
        if (
            session is not None
            and session.version == ProtocolVersion.TLS12
            and hello.legacy_session_id_echo == self._session_id
        ):
            # The server echoed our session id: it resumes the session in our ticket.
            if session.cipher_suite != hello.cipher_suite:
                raise illegal_parameter("resumed session with another cipher suite")
            if session.extended_master_secret != ems:
                raise handshake_failure("resumed session changes extended master secret")
            resumed = session
        elif hello.legacy_session_id_echo and hello.legacy_session_id_echo == self._session_id:
            raise illegal_parameter("server resumes a session we did not offer")
        role = Tls12ClientHandshake(
            self,
            c,
            suite,
            self._random,
            hello.random,
            transcript,
            ems,
            alpn,
            resumed,
            ExtensionType.SESSION_TICKET in extensions,
        )
        self.use_tls12(role)
        self.state = ClientState.TLS12

    def complete_tls12(self, event: ev.HandshakeComplete) -> None:
        self.negotiated = event
        self.state = ClientState.CONNECTED
        self.complete(event)

    def _on_hello_retry_request(
        self, hello: ServerHello, extensions: dict[int, bytes], raw: bytes
    ) -> None:
        if self._retried:
            raise unexpected_message("second HelloRetryRequest")
        self._retried = True
        self.allow_change_cipher_spec(True)
        assert self._params is not None
        selected = extensions.get(ExtensionType.KEY_SHARE)
        if selected is None or len(selected) != 2:
            raise decode_error("HelloRetryRequest key_share must name one group")
        group = int.from_bytes(selected, "big")
        if group not in self._config.groups or group in self._shares:
            raise illegal_parameter("HelloRetryRequest asks for a group we cannot use")
        cookie = extensions.get(ExtensionType.COOKIE)
        self._cookie = pull_cookie(cookie) if cookie is not None else None
        transcript = Transcript(self._params.hash_name)
        transcript.update(self._first_hello_raw)
        transcript.restart_for_hello_retry()
        transcript.update(raw)
        self._shares = {group: KeyShare(NamedGroup(group))}
        if self._early_data_offered:
            # The 0-RTT records went out under the early key; the second hello is plaintext
            # again (RFC 8446 4.2.10: the server skips those records and goes on).
            self._write = None
            self.early_data_accepted = False
        self._early_data_offered = False  # a retried hello never carries 0-RTT
        if not self._sent_change_cipher_spec:
            self.send_change_cipher_spec()
            self._sent_change_cipher_spec = True
        transcript.update(self._send_client_hello(transcript))
        self._transcript = transcript

    # ----- the server's encrypted flight ----------------------------------------------------

    def _on_encrypted_extensions(self, body: bytes, raw: bytes) -> None:
        assert self._transcript is not None
        message = pull_encrypted_extensions(Reader(body))
        for ext_type, ext_body in message.extensions:
            if ext_type not in self._offered_extensions:
                # RFC 8446 4.2: a response to an extension we never sent (early_data after a
                # retry, an ALPN or SNI answer to a hello without them, anything unknown).
                raise TLSError(
                    AlertDescription.UNSUPPORTED_EXTENSION, f"extension {ext_type} never offered"
                )
            if ext_type not in _ENCRYPTED_EXTENSIONS:
                raise illegal_parameter(f"extension {ext_type} does not belong in EE")
            if ext_type == ExtensionType.ALPN:
                names = pull_alpn(ext_body)
                if len(names) != 1 or names[0] not in self._config.alpn_protocols:
                    raise illegal_parameter("server selected an ALPN protocol we did not offer")
                self._alpn = names[0]
            elif ext_type == ExtensionType.SERVER_NAME:
                if ext_body:
                    raise decode_error("server_name in EncryptedExtensions must be empty")
            elif ext_type == ExtensionType.HEARTBEAT:
                pull_heartbeat_mode(ext_body)
                self.heartbeat_negotiated = self._config.heartbeat
            elif ext_type == ExtensionType.EARLY_DATA:
                if not self._early_data_offered or ext_body:
                    raise illegal_parameter("early_data accepted though never offered")
                self.early_data_accepted = True
        self._transcript.update(raw)
        # A resumed session was authenticated when its ticket was issued.
        self.state = ClientState.WAIT_FINISHED if self._resumed else ClientState.WAIT_CERTIFICATE

    def _on_certificate_request(self, body: bytes, raw: bytes) -> None:
        assert self._transcript is not None
        request = pull_certificate_request(Reader(body))
        schemes: tuple[int, ...] = ()
        for ext_type, ext_body in request.extensions:
            if ext_type == ExtensionType.SIGNATURE_ALGORITHMS:
                schemes = pull_uint16_list_ext(ext_body, 2, "signature_algorithms")
        if not schemes:
            raise TLSError(AlertDescription.MISSING_EXTENSION, "CertificateRequest without schemes")
        self._certificate_request = (request.request_context, schemes)
        self._transcript.update(raw)

    def _send_client_certificate(self, context: bytes, schemes: tuple[int, ...]) -> None:
        """Our certificate and proof of its key, or an empty Certificate when we have none the
        server can accept (the server then decides)."""
        assert self._transcript is not None
        certified = self._config.client_certificate
        scheme = None
        if certified is not None:
            scheme = next(
                (s for s in certified.signer.schemes() if s in schemes and s in TLS13_SCHEMES),
                None,
            )
        entries: tuple[CertificateEntry, ...] = ()
        if certified is not None and scheme is not None:
            entries = tuple(
                CertificateEntry(c.public_bytes(Encoding.DER), ()) for c in certified.chain
            )
        w = Writer()
        push_certificate(w, Certificate(context, entries))
        self._transcript.update(self.send_handshake(HandshakeType.CERTIFICATE, w.getvalue()))
        if certified is None or scheme is None:
            return
        content = certificate_verify_content(self._transcript.digest(), server=False)
        w = Writer()
        push_certificate_verify(
            w, CertificateVerify(scheme, sign_with(certified.signer, scheme, content))
        )
        self._transcript.update(self.send_handshake(HandshakeType.CERTIFICATE_VERIFY, w.getvalue()))

    def _on_certificate(self, body: bytes, raw: bytes) -> None:
        assert self._transcript is not None
        limits = self.limits
        message = pull_certificate(
            Reader(body), limits.max_certificate_chain, limits.max_chain_length
        )
        if message.request_context:
            raise illegal_parameter("server Certificate with a request context")
        if not message.entries:
            raise decode_error("server sent an empty certificate chain")
        if any(entry.extensions for entry in message.entries):
            # RFC 8446 4.4.2: they answer status_request or signed_certificate_timestamp in our
            # hello, and we send neither.
            raise TLSError(AlertDescription.UNSUPPORTED_EXTENSION, "CertificateEntry extension")
        self._chain = load_chain([e.cert_data for e in message.entries])
        self._transcript.update(raw)
        self.state = ClientState.WAIT_CERTIFICATE_VERIFY

    def _on_certificate_verify(self, body: bytes, raw: bytes, now: float) -> None:
        assert self._transcript is not None
        message = pull_certificate_verify(Reader(body))
        if self._config.verify:
            verify_server_chain(self._chain, self._config.trust_roots, self.server_name or "", now)
        content = certificate_verify_content(self._transcript.digest(), server=True)
        if message.algorithm not in TLS13_SCHEMES or not verify_signature(
            self._chain[0].public_key(), message.algorithm, content, message.signature
        ):
            raise TLSError(AlertDescription.DECRYPT_ERROR, "CertificateVerify does not verify")
        self._transcript.update(raw)
        self.peer_certificates = tuple(self._chain)
        self.state = ClientState.WAIT_FINISHED

    def _on_finished(self, body: bytes, raw: bytes) -> None:
        assert self._transcript and self._schedule and self._params and self._group
        finished = pull_finished(Reader(body), self._params.hash_length)
        expected = self._schedule.finished_verify_data(self._server_hs, self._transcript.digest())
        if not hmac.compare_digest(finished.verify_data, expected):
            raise TLSError(AlertDescription.DECRYPT_ERROR, "server Finished does not verify")
        self._transcript.update(raw)
        client_app, server_app = self._schedule.application_traffic_secrets(
            self._transcript.digest()
        )
        if self._early_data_offered and self.early_data_accepted is None:
            self.early_data_accepted = False
        if self.early_data_accepted:
            # RFC 8446 4.5: EndOfEarlyData, still under the early traffic key.
            self._transcript.update(self.send_handshake(HandshakeType.END_OF_EARLY_DATA, b""))
        if not self._sent_change_cipher_spec:
            self.send_change_cipher_spec()
            self._sent_change_cipher_spec = True
        self.set_write_secret(self._client_hs)
        if self._certificate_request is not None:
            self._send_client_certificate(*self._certificate_request)
        verify_data = self._schedule.finished_verify_data(
            self._client_hs, self._transcript.digest()
        )
        self._transcript.update(self.send_handshake(HandshakeType.FINISHED, verify_data))
        self._resumption_master = self._schedule.resumption_master_secret(self._transcript.digest())
        self.set_read_secret(server_app)
        self.set_write_secret(client_app)
        self.state = ClientState.CONNECTED
        self.negotiated = ev.HandshakeComplete(
            version=ProtocolVersion.TLS13,
            cipher_suite=self._params.suite,
            group=self._group,
            alpn_protocol=self._alpn,
            server_name=self.server_name,
            resumed=self._resumed,
        )
        self.complete(self.negotiated)


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
