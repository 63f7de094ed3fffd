"""Client role of a TLS 1.2 handshake, taken over from `ClientConnection` after a TLS 1.2
ServerHello: Certificate, ServerKeyExchange, ServerHelloDone; then ClientKeyExchange,
ChangeCipherSpec, Finished; then the server's ChangeCipherSpec and Finished."""

from __future__ import annotations

from enum import Enum, auto
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from outwork.tls import events as ev
from outwork.tls.alerts import (
    AlertDescription,
    TLSError,
    decode_error,
    illegal_parameter,
    unexpected_message,
)
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import GROUPS_TLS12, CertifiedKey, ClientConfig
from outwork.tls.enums import HandshakeType, NamedGroup, ProtocolVersion, SignatureScheme
from outwork.tls.groups import KeyShare
from outwork.tls.keyschedule import Transcript
from outwork.tls.messages import (
    CertificateRequest12,
    CertificateVerify,
    handshake_message,
    pull_certificate12,
    pull_certificate_request12,
    pull_new_session_ticket12,
    pull_server_key_exchange,
    push_certificate12,
    push_certificate_verify,
    push_client_key_exchange,
)
from outwork.tls.signing import TLS12_SCHEMES, sign_with, verify_signature
from outwork.tls.tickets import ClientSession
from outwork.tls.tls12 import (
    Suite12,
    Tls12RecordCipher,
    check_finished,
    finished_verify_data,
    master_secret,
    traffic_ciphers,
)
from outwork.tls.verify import load_chain, verify_server_chain

if TYPE_CHECKING:
    from outwork.tls.client import ClientConnection


class Client12State(Enum):
    WAIT_CERTIFICATE = auto()
    WAIT_SERVER_KEY_EXCHANGE = auto()
    WAIT_SERVER_HELLO_DONE = auto()
    WAIT_CHANGE_CIPHER_SPEC = auto()
    WAIT_FINISHED = auto()
    CONNECTED = auto()


class Tls12ClientHandshake:
    def __init__(
        self,
        conn: ClientConnection,
        config: ClientConfig,
        suite: Suite12,
        client_random: bytes,
        server_random: bytes,
        transcript: Transcript,
        ems: bool,
        alpn: str | None,
        resumed: ClientSession | None,
        expect_ticket: bool,
    ) -> None:
        self._conn = conn
        self._config = config
        self._suite = suite
        self._client_random = client_random
        self._server_random = server_random
        self._transcript = transcript
        self._ems = ems
        self._alpn = alpn
        self._chain: list[x509.Certificate] = []
        self._group: NamedGroup | None = None
        self._server_public = b""
        self._certificate_request: CertificateRequest12 | None = None
        self._master = b""
        self._pending_read: Tls12RecordCipher | None = None
        self._pending_write: Tls12RecordCipher | None = None
        self._expect_ticket = expect_ticket
        self._resumed = resumed is not None
        self.state = Client12State.WAIT_CERTIFICATE
        if resumed is not None:
            # RFC 5077 3.1: [NewSessionTicket], ChangeCipherSpec, Finished come next.
            self._master = resumed.secret
            self._group = None
            self._derive_keys()
            self.state = Client12State.WAIT_CHANGE_CIPHER_SPEC

    def handle(self, msg_type: int, body: bytes, raw: bytes, now: float) -> None:
        state = self.state
        if state is Client12State.WAIT_CERTIFICATE and msg_type == HandshakeType.CERTIFICATE:
            self._on_certificate(body)
        elif (
            state is Client12State.WAIT_SERVER_KEY_EXCHANGE
            and msg_type == HandshakeType.SERVER_KEY_EXCHANGE
        ):
            self._on_server_key_exchange(body, now)
        elif state is Client12State.WAIT_SERVER_HELLO_DONE and msg_type in (
            HandshakeType.CERTIFICATE_REQUEST,
            HandshakeType.SERVER_HELLO_DONE,
        ):
            if msg_type == HandshakeType.CERTIFICATE_REQUEST:
                if self._certificate_request is not None:
                    raise unexpected_message("second CertificateRequest")
                self._certificate_request = pull_certificate_request12(Reader(body))
                self._transcript.update(raw)
                return
            if body:
                raise decode_error("ServerHelloDone is not empty")
            self._transcript.update(raw)
            self._send_second_flight()
            return
        elif (
            state is Client12State.WAIT_CHANGE_CIPHER_SPEC
            and msg_type == HandshakeType.NEW_SESSION_TICKET
            and self._expect_ticket
        ):
            self._expect_ticket = False  # one ticket per handshake
            self._on_new_session_ticket(body)
        elif state is Client12State.WAIT_FINISHED and msg_type == HandshakeType.FINISHED:
            self._on_finished(body, raw)
            return
        else:
            raise unexpected_message(f"handshake message {msg_type} in state {state.name}")
        self._transcript.update(raw)

    def _on_certificate(self, body: bytes) -> None:
        limits = self._conn.limits
        certs = pull_certificate12(
            Reader(body), limits.max_certificate_chain, limits.max_chain_length
        )
        if not certs:
            raise decode_error("server sent an empty certificate chain")
        self._chain = load_chain(certs)
        self.state = Client12State.WAIT_SERVER_KEY_EXCHANGE

    def _on_server_key_exchange(self, body: bytes, now: float) -> None:
        message = pull_server_key_exchange(Reader(body))
        if message.group not in GROUPS_TLS12 or message.group not in self._config.groups:
            raise illegal_parameter("server chose an ECDHE group we did not offer")
        if self._config.verify:
            verify_server_chain(
                self._chain, self._config.trust_roots, self._conn.server_name or "", now
            )
        signed = self._client_random + self._server_random + message.params()
        if not verify_signature(
            self._chain[0].public_key(), message.algorithm, signed, message.signature, tls12=True
        ):
            raise TLSError(AlertDescription.DECRYPT_ERROR, "ServerKeyExchange signature is invalid")
        self._group = NamedGroup(message.group)
        self._server_public = message.public
        self._conn.peer_certificates = tuple(self._chain)
        self.state = Client12State.WAIT_SERVER_HELLO_DONE

    def _send_second_flight(self) -> None:
        assert self._group is not None
        flight = b""
        certified, scheme = self._client_certificate()
        if self._certificate_request is not None:
            chain = (
                tuple(c.public_bytes(Encoding.DER) for c in certified.chain) if certified else ()
            )
            w = Writer()
            push_certificate12(w, chain)
            flight += handshake_message(HandshakeType.CERTIFICATE, w.getvalue())
        key = KeyShare(self._group)
        premaster = key.shared_secret(self._server_public)
        w = Writer()
        push_client_key_exchange(w, key.share)
        flight += handshake_message(HandshakeType.CLIENT_KEY_EXCHANGE, w.getvalue())
        self._transcript.update(flight)
        session_hash = self._transcript.digest() if self._ems else None
        if certified is not None and scheme is not None:
            assert self._transcript.messages is not None
            signature = sign_with(certified.signer, scheme, bytes(self._transcript.messages))
            w = Writer()
            push_certificate_verify(w, CertificateVerify(scheme, signature))
            verify = handshake_message(HandshakeType.CERTIFICATE_VERIFY, w.getvalue())
            self._transcript.update(verify)
            flight += verify
        self._master = master_secret(
            self._suite, premaster, self._client_random, self._server_random, session_hash
        )
        self._derive_keys()
        self._conn.send_handshake_bytes(flight)
        self._send_finished()
        self.state = Client12State.WAIT_CHANGE_CIPHER_SPEC

    def _client_certificate(self) -> tuple[CertifiedKey | None, SignatureScheme | None]:
        """Our certificate and a scheme the server accepts, if it asked and we have one."""
        request = self._certificate_request
        certified = self._config.client_certificate
        if request is None or certified is None:
            return None, None
        for scheme in certified.signer.schemes():
            if scheme in request.signature_algorithms and scheme in TLS12_SCHEMES:
                return certified, scheme
        return None, None

    def _derive_keys(self) -> None:
        self._pending_write, self._pending_read = traffic_ciphers(
            self._suite, self._master, self._client_random, self._server_random
        )

    def _send_finished(self) -> None:
        assert self._pending_write is not None
        self._conn.send_change_cipher_spec()
        self._conn.install_write_cipher(self._pending_write)
        self._pending_write = None
        verify_data = finished_verify_data(
            self._suite, self._master, server=False, transcript_hash=self._transcript.digest()
        )
        self._transcript.update(self._conn.send_handshake(HandshakeType.FINISHED, verify_data))

    def _on_new_session_ticket(self, body: bytes) -> None:
        ticket = pull_new_session_ticket12(Reader(body))
        if not ticket.ticket:
            return  # RFC 5077 3.3: an empty ticket means "none issued this time"
        self._conn.sessions.append(
            ClientSession(
                version=ProtocolVersion.TLS12,
                cipher_suite=self._suite.suite,
                secret=self._master,
                ticket=ticket.ticket,
                received_at=self._conn.now,
                lifetime_s=min(ticket.lifetime_hint or 7200, 7 * 24 * 3600),
                age_add=0,
                extended_master_secret=self._ems,
                server_name=self._conn.server_name or "",
            )
        )

    def change_cipher_spec(self) -> None:
        if self.state is not Client12State.WAIT_CHANGE_CIPHER_SPEC or self._pending_read is None:
            raise unexpected_message("change_cipher_spec out of order")
        self._conn.install_read_cipher(self._pending_read)
        self._pending_read = None
        self.state = Client12State.WAIT_FINISHED

    def _on_finished(self, body: bytes, raw: bytes) -> None:
        check_finished(self._suite, self._master, True, self._transcript.digest(), body)
        self._transcript.update(raw)
        if self._resumed:
            self._send_finished()
        self.state = Client12State.CONNECTED
        self._conn.complete_tls12(
            ev.HandshakeComplete(
                version=ProtocolVersion.TLS12,
                cipher_suite=self._suite.suite,
                group=self._group,
                alpn_protocol=self._alpn,
                server_name=self._conn.server_name,
                resumed=self._resumed,
            )
        )
