"""Server role of a TLS 1.2 handshake (RFC 5246 7.3, RFC 8422, RFC 7627, RFC 5746).

Taken over from `ServerConnection` once the ClientHello settles on TLS 1.2. Full handshake:
ServerHello, Certificate, ServerKeyExchange (ECDHE, signed), ServerHelloDone; then the
client's ClientKeyExchange, ChangeCipherSpec and Finished; then ours.
"""

from __future__ import annotations

import dataclasses
import os
from enum import Enum, auto
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from outwork.tls import events as ev
from outwork.tls.alerts import (
    AlertDescription,
    TLSError,
    handshake_failure,
    illegal_parameter,
    unexpected_message,
)
from outwork.tls.certselect import certificate_candidates
from outwork.tls.clientauth import (
    ClientAuth,
    ClientIdentity,
    trust_binding,
    verify_client_chain,
)
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import GROUPS_TLS12, CertifiedKey, ServerConfig
from outwork.tls.enums import (
    CipherSuite,
    ExtensionType,
    HandshakeType,
    HeartbeatMode,
    NamedGroup,
    ProtocolVersion,
    SignatureScheme,
)
from outwork.tls.extensions import ClientHelloOffer, push_alpn
from outwork.tls.groups import KeyShare
from outwork.tls.keyschedule import Transcript
from outwork.tls.messages import (
    CertificateRequest12,
    ClientHello,
    Extension,
    NewSessionTicket12,
    ServerHello,
    ServerKeyExchangeECDHE,
    handshake_message,
    pull_certificate12,
    pull_certificate_verify,
    pull_client_key_exchange,
    push_certificate12,
    push_certificate_request12,
    push_new_session_ticket12,
    push_server_hello,
    push_server_key_exchange,
)
from outwork.tls.signing import TLS12_SCHEMES, sign_with, verify_signature
from outwork.tls.tickets import (
    SessionState,
    open_ticket,
    session_lifetime_left,
    still_authenticated,
    ticket_for,
)
from outwork.tls.tls12 import (
    SUITES12,
    Suite12,
    Tls12RecordCipher,
    check_finished,
    finished_verify_data,
    master_secret,
    traffic_ciphers,
)
from outwork.tls.verify import load_chain

if TYPE_CHECKING:
    from outwork.tls.server import ServerConnection

_RSA_SIGN = 1  # ClientCertificateType values (RFC 5246 7.4.4, RFC 8422)
_ECDSA_SIGN = 64

# RFC 8446 4.1.3: a TLS 1.3 server negotiating TLS 1.2 ends ServerHello.random with this.
DOWNGRADE_SENTINEL_TLS12 = b"DOWNGRD\x01"


class Server12State(Enum):
    WAIT_CLIENT_CERTIFICATE = auto()  # mTLS: after our CertificateRequest
    WAIT_CLIENT_KEY_EXCHANGE = auto()
    WAIT_CERTIFICATE_VERIFY = auto()
    WAIT_CHANGE_CIPHER_SPEC = auto()
    WAIT_FINISHED = auto()
    CONNECTED = auto()


class Tls12ServerHandshake:
    def __init__(
        self,
        conn: ServerConnection,
        config: ServerConfig,
        hello: ClientHello,
        offer: ClientHelloOffer,
        raw: bytes,
        alpn: str | None,
        ja4: str | None,
        now: float,
    ) -> None:
        self._conn = conn
        self._config = config
        self._now = now
        self._client_random = hello.random
        self._server_random = os.urandom(24) + DOWNGRADE_SENTINEL_TLS12
        if offer.renegotiation_info:
            # RFC 5746 3.6: an initial handshake must carry an empty renegotiated_connection.
            raise handshake_failure("non-empty renegotiation_info in an initial handshake")
        if config.require_ems and not offer.extended_master_secret:
            raise handshake_failure("client does not offer extended master secret (RFC 7627)")
        if offer.ec_point_formats is not None and 0 not in offer.ec_point_formats:
            raise illegal_parameter("client does not accept uncompressed EC points")
        self._ems = offer.extended_master_secret
        self._alpn = alpn
        self._server_name = offer.server_name
        # A ticket is issued when the client asked for one (even an empty extension).
        self._issue_ticket = config.ticket_keys is not None and offer.session_ticket is not None
        self._pending_read: Tls12RecordCipher | None = None
        self._pending_write: Tls12RecordCipher | None = None
        self._master = b""
        resumed = self._resumable_session(hello, offer)
        self.resumed = resumed is not None
        if resumed is not None:
            self._suite = SUITES12[resumed.cipher_suite]
            self._master = resumed.secret
            self._group: NamedGroup | None = None
        else:
            certified, self._suite, scheme = _choose_certificate_and_suite(config, hello, offer)
            self._group = _choose_group(config, offer)
            self._key = KeyShare(self._group)
        self._ask_certificate = resumed is None and config.client_auth is not ClientAuth.NONE
        self._transcript = Transcript(self._suite.hash_name, keep_messages=self._ask_certificate)
        self._transcript.update(raw)
        self._client_leaf: x509.Certificate | None = None
        self.client_identity: ClientIdentity | None = None
        # This handshake's time, or the resumed session's full handshake (tickets.py).
        self._authenticated_at_ms = int(now * 1000)
        if resumed is not None:
            self.client_identity = resumed.client_identity
            self._authenticated_at_ms = resumed.authenticated_at_ms
        self._negotiated = ev.HandshakeComplete(
            version=ProtocolVersion.TLS12,
            cipher_suite=self._suite.suite,
            group=self._group,
            alpn_protocol=alpn,
            server_name=offer.server_name,
            ja4=ja4,
            resumed=self.resumed,
        )
        server_hello = self._server_hello(hello, offer)
        if resumed is not None:
            self._send_abbreviated_flight(server_hello)
        else:
            self._send_first_flight(server_hello, certified, scheme)

    def _resumable_session(
        self, hello: ClientHello, offer: ClientHelloOffer
    ) -> SessionState | None:
        """The session in the client's ticket, if it may be resumed here (RFC 5077 3.4). The
        client's session id is echoed to say so; without one, resumption cannot be signalled."""
        keys = self._config.ticket_keys
        if keys is None or not offer.session_ticket or not hello.legacy_session_id:
            return None
        state = open_ticket(keys, offer.session_ticket, self._now)
        if state is None or state.version != ProtocolVersion.TLS12:
            return None
        if state.cipher_suite not in hello.cipher_suites:
            return None
        if state.cipher_suite not in self._config.cipher_suites_tls12:
            return None
        if state.server_name != (offer.server_name or ""):
            return None
        if self._config.client_auth is ClientAuth.REQUIRED and not state.client_identity:
            return None  # the session proves no client identity; a full handshake will
        binding = trust_binding(self._config.client_auth, self._config.client_ca)
        if not still_authenticated(state, binding, self._config.ticket_lifetime, self._now):
            return None  # too long since the full handshake, or other trust: prove it again
        if state.extended_master_secret and not offer.extended_master_secret:
            # RFC 7627 5.3: an EMS session offered without EMS must abort.
            raise handshake_failure("session used extended master secret; this hello does not")
        if not state.extended_master_secret:
            return None  # RFC 7627 5.3: a full handshake, never a resumed non-EMS session
        return state

    def _server_hello(self, hello: ClientHello, offer: ClientHelloOffer) -> bytes:
        extensions: list[Extension] = []
        secure_renegotiation = (
            offer.renegotiation_info is not None
            or CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV in hello.cipher_suites
        )
        if secure_renegotiation:
            extensions.append((ExtensionType.RENEGOTIATION_INFO, b"\x00"))
        if self._ems:
            extensions.append((ExtensionType.EXTENDED_MASTER_SECRET, b""))
        if offer.ec_point_formats is not None and not self.resumed:
            extensions.append((ExtensionType.EC_POINT_FORMATS, b"\x01\x00"))
        if self._alpn is not None:
            extensions.append((ExtensionType.ALPN, push_alpn((self._alpn,))))
        if offer.heartbeat_mode is not None and self._conn.heartbeat_enabled:
            heartbeat = bytes((HeartbeatMode.PEER_ALLOWED_TO_SEND,))
            extensions.append((ExtensionType.HEARTBEAT, heartbeat))
            self._conn.heartbeat_negotiated = True
        if self._issue_ticket:
            extensions.append((ExtensionType.SESSION_TICKET, b""))
        # Sessions are resumed by ticket only: a full handshake gets an empty session id (no
        # session cache to look it up in), a resumed one echoes the client's.
        session_id = hello.legacy_session_id if self.resumed else b""
        server_hello = ServerHello(
            ProtocolVersion.TLS12,
            self._server_random,
            session_id,
            self._suite.suite,
            0,
            tuple(extensions),
        )
        w = Writer()
        push_server_hello(w, server_hello)
        return handshake_message(HandshakeType.SERVER_HELLO, w.getvalue())

    def _send_first_flight(
        self, server_hello: bytes, certified: CertifiedKey, scheme: SignatureScheme
    ) -> None:
        flight = server_hello
        w = Writer()
        push_certificate12(w, tuple(c.public_bytes(Encoding.DER) for c in certified.chain))
        flight += handshake_message(HandshakeType.CERTIFICATE, w.getvalue())

        unsigned = ServerKeyExchangeECDHE(self._group or 0, self._key.share, scheme, b"")
        signed = self._client_random + self._server_random + unsigned.params()
        w = Writer()
        push_server_key_exchange(
            w, dataclasses.replace(unsigned, signature=sign_with(certified.signer, scheme, signed))
        )
        flight += handshake_message(HandshakeType.SERVER_KEY_EXCHANGE, w.getvalue())
        if self._ask_certificate:
            request = CertificateRequest12(
                bytes((_ECDSA_SIGN, _RSA_SIGN)),
                tuple(sorted(TLS12_SCHEMES)),
                tuple(ca.subject.public_bytes() for ca in self._config.client_ca),
            )
            w = Writer()
            push_certificate_request12(w, request)
            flight += handshake_message(HandshakeType.CERTIFICATE_REQUEST, w.getvalue())
        flight += handshake_message(HandshakeType.SERVER_HELLO_DONE, b"")
        self._transcript.update(flight)
        self._conn.send_handshake_bytes(flight)
        self.state = (
            Server12State.WAIT_CLIENT_CERTIFICATE
            if self._ask_certificate
            else Server12State.WAIT_CLIENT_KEY_EXCHANGE
        )

    def _send_abbreviated_flight(self, server_hello: bytes) -> None:
        """RFC 5077 3.1: ServerHello, [NewSessionTicket], ChangeCipherSpec, Finished."""
        self._transcript.update(server_hello)
        self._conn.send_handshake_bytes(server_hello)
        self._derive_keys()
        self._finish_server_side()
        self.state = Server12State.WAIT_CHANGE_CIPHER_SPEC

    def _derive_keys(self) -> None:
        self._pending_read, self._pending_write = traffic_ciphers(
            self._suite, self._master, self._client_random, self._server_random
        )

    def _finish_server_side(self) -> None:
        """[NewSessionTicket], ChangeCipherSpec, Finished."""
        if self._issue_ticket:
            self._send_ticket()
        assert self._pending_write is not None
        self._conn.send_change_cipher_spec()
        self._conn.install_write_cipher(self._pending_write)
        self._pending_write = None
        verify_data = finished_verify_data(
            self._suite, self._master, server=True, transcript_hash=self._transcript.digest()
        )
        self._transcript.update(self._conn.send_handshake(HandshakeType.FINISHED, verify_data))

    def _send_ticket(self) -> None:
        keys = self._config.ticket_keys
        assert keys is not None
        lifetime = session_lifetime_left(
            self._authenticated_at_ms, self.client_identity, self._config.ticket_lifetime, self._now
        )
        state = SessionState(
            version=ProtocolVersion.TLS12,
            cipher_suite=self._suite.suite,
            secret=self._master,
            issued_at_ms=int(self._now * 1000),
            lifetime_s=max(lifetime, 0),
            age_add=0,
            extended_master_secret=self._ems,
            alpn=self._alpn or "",
            server_name=self._server_name or "",
            client_identity=self.client_identity,
            authenticated_at_ms=self._authenticated_at_ms,
            trust_binding=trust_binding(self._config.client_auth, self._config.client_ca),
        )
        # RFC 5077 3.3: promised in the ServerHello, so sent; empty when the session may not
        # be resumed any more (the client certificate expires now) or its identity is too
        # large for a ticket.
        sealed = ticket_for(keys, state, self._now) if lifetime > 0 else None
        w = Writer()
        push_new_session_ticket12(w, NewSessionTicket12(max(lifetime, 0), sealed or b""))
        self._transcript.update(
            self._conn.send_handshake(HandshakeType.NEW_SESSION_TICKET, w.getvalue())
        )

    def handle(self, msg_type: int, body: bytes, raw: bytes, now: float) -> None:
        self._now = now
        expected = {
            Server12State.WAIT_CLIENT_CERTIFICATE: HandshakeType.CERTIFICATE,
            Server12State.WAIT_CLIENT_KEY_EXCHANGE: HandshakeType.CLIENT_KEY_EXCHANGE,
            Server12State.WAIT_CERTIFICATE_VERIFY: HandshakeType.CERTIFICATE_VERIFY,
            Server12State.WAIT_FINISHED: HandshakeType.FINISHED,
        }.get(self.state)
        if msg_type != expected:
            raise unexpected_message(f"handshake message {msg_type} in state {self.state.name}")
        if self.state is Server12State.WAIT_CLIENT_CERTIFICATE:
            self._on_client_certificate(body, raw)
        elif self.state is Server12State.WAIT_CLIENT_KEY_EXCHANGE:
            self._on_client_key_exchange(body, raw)
        elif self.state is Server12State.WAIT_CERTIFICATE_VERIFY:
            self._on_certificate_verify(body, raw)
        else:
            self._on_finished(body, raw)

    def _on_client_certificate(self, body: bytes, raw: bytes) -> None:
        limits = self._conn.limits
        ders = pull_certificate12(
            Reader(body), limits.max_certificate_chain, limits.max_chain_length
        )
        self._transcript.update(raw)
        self.state = Server12State.WAIT_CLIENT_KEY_EXCHANGE
        if not ders:
            if self._config.client_auth is ClientAuth.REQUIRED:
                raise handshake_failure("no client certificate")  # RFC 5246 7.4.6
            return
        chain = load_chain(ders)
        try:
            self.client_identity = verify_client_chain(chain, self._config.client_ca, self._now)
        except TLSError:
            if self._config.client_auth is ClientAuth.REQUIRED:
                raise
            self.client_identity = None  # optional: the connection goes on without identity
        self._client_leaf = chain[0]

    def _on_certificate_verify(self, body: bytes, raw: bytes) -> None:
        assert self._client_leaf is not None and self._transcript.messages is not None
        message = pull_certificate_verify(Reader(body))
        if not verify_signature(
            self._client_leaf.public_key(),
            message.algorithm,
            bytes(self._transcript.messages),
            message.signature,
            tls12=True,
        ):
            raise TLSError(AlertDescription.DECRYPT_ERROR, "client CertificateVerify is invalid")
        self._transcript.update(raw)
        self.state = Server12State.WAIT_CHANGE_CIPHER_SPEC

    def _on_client_key_exchange(self, body: bytes, raw: bytes) -> None:
        public = pull_client_key_exchange(Reader(body))
        premaster = self._key.shared_secret(public)
        self._transcript.update(raw)
        session_hash = self._transcript.digest() if self._ems else None
        self._master = master_secret(
            self._suite, premaster, self._client_random, self._server_random, session_hash
        )
        self._derive_keys()
        self.state = (
            Server12State.WAIT_CERTIFICATE_VERIFY
            if self._client_leaf is not None
            else Server12State.WAIT_CHANGE_CIPHER_SPEC
        )

    def change_cipher_spec(self) -> None:
        if self.state is not Server12State.WAIT_CHANGE_CIPHER_SPEC or self._pending_read is None:
            raise unexpected_message("change_cipher_spec out of order")
        self._conn.install_read_cipher(self._pending_read)
        self._pending_read = None
        self.state = Server12State.WAIT_FINISHED

    def _on_finished(self, body: bytes, raw: bytes) -> None:
        check_finished(self._suite, self._master, False, self._transcript.digest(), body)
        self._transcript.update(raw)
        if not self.resumed:
            self._finish_server_side()
        self.state = Server12State.CONNECTED
        if self.client_identity is not None:
            self._negotiated = dataclasses.replace(
                self._negotiated, client_identity=self.client_identity
            )
        self._conn.client_identity = self.client_identity
        self._conn.complete_tls12(self._negotiated)


def _choose_certificate_and_suite(
    config: ServerConfig, hello: ClientHello, offer: ClientHelloOffer
) -> tuple[CertifiedKey, Suite12, SignatureScheme]:
    """Server preference: the first configured suite the client offers for which a certificate
    of the matching key type can sign with a scheme the client accepts."""
    candidates = certificate_candidates(config, offer)
    offered = set(hello.cipher_suites)
    schemes_offered = set(offer.signature_algorithms)
    if not schemes_offered:
        # RFC 5246 would default to SHA-1 here; outwork does not sign with SHA-1.
        raise handshake_failure("TLS 1.2 client without signature_algorithms")
    for suite_id in config.cipher_suites_tls12:
        if suite_id not in offered:
            continue
        suite = SUITES12[suite_id]
        for certified in candidates:
            if _signing_family(certified) != suite.signing:
                continue
            if not _curve_acceptable(certified, offer):
                continue
            for scheme in certified.signer.schemes():
                if scheme in schemes_offered and scheme in TLS12_SCHEMES:
                    return certified, suite, scheme
    raise handshake_failure("no TLS 1.2 cipher suite and certificate in common")


def _curve_acceptable(certified: CertifiedKey, offer: ClientHelloOffer) -> bool:
    """RFC 8422 5.1: in TLS 1.2, supported_groups also limits the curve of an ECDSA
    certificate (clients such as OpenSSL refuse a certificate on another curve)."""
    key = certified.chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not offer.supported_groups:
        return True
    return _CURVE_GROUPS.get(key.curve.name) in offer.supported_groups


_CURVE_GROUPS = {
    "secp256r1": NamedGroup.SECP256R1,
    "secp384r1": NamedGroup.SECP384R1,
    "secp521r1": NamedGroup.SECP521R1,
}


def _signing_family(certified: CertifiedKey) -> str:
    first = certified.signer.schemes()[0]
    return "rsa" if first.name.startswith("RSA") else "ecdsa"


def _choose_group(config: ServerConfig, offer: ClientHelloOffer) -> NamedGroup:
    offered = set(offer.supported_groups)
    for group in config.groups:
        if group in GROUPS_TLS12 and group in offered:
            return group
    raise handshake_failure("no TLS 1.2 ECDHE group in common")
