"""Server role of a TLS 1.2 handshake (RFC 5246 7.3, RFC 8422, RFC 7627, RFC 5746).

Taken over from `ServerConnection` once the ClientHello settles on TLS 1.2. Full handshake:
ServerHello, Certificate, ServerKeyExchange (ECDHE, signed), ServerHelloDone; then the
client's ClientKeyExchange, ChangeCipherSpec and Finished; then ours.
"""

from __future__ import annotations

import hmac
import os
from enum import Enum, auto
from typing import TYPE_CHECKING

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
    ClientHello,
    Extension,
    ServerHello,
    ServerKeyExchangeECDHE,
    handshake_message,
    pull_client_key_exchange,
    pull_finished,
    push_certificate12,
    push_server_hello,
    push_server_key_exchange,
)
from outwork.tls.signing import TLS12_SCHEMES
from outwork.tls.tls12 import (
    SUITES12,
    Suite12,
    Tls12RecordCipher,
    finished_verify_data,
    key_block,
    master_secret,
)

if TYPE_CHECKING:
    from outwork.tls.server import ServerConnection

# RFC 8446 4.1.3: a TLS 1.3 server negotiating TLS 1.2 ends ServerHello.random with this.
DOWNGRADE_SENTINEL_TLS12 = b"DOWNGRD\x01"


class Server12State(Enum):
    WAIT_CLIENT_KEY_EXCHANGE = auto()
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
    ) -> None:
        self._conn = conn
        self._client_random = hello.random
        self._server_random = os.urandom(24) + DOWNGRADE_SENTINEL_TLS12
        self._check_renegotiation_info(hello, offer)
        if config.require_ems and not offer.extended_master_secret:
            raise handshake_failure("client does not offer extended master secret (RFC 7627)")
        if offer.ec_point_formats is not None and 0 not in offer.ec_point_formats:
            raise illegal_parameter("client does not accept uncompressed EC points")
        self._ems = offer.extended_master_secret
        certified, suite, scheme = _choose_certificate_and_suite(config, hello, offer)
        self._suite = suite
        self._group = _choose_group(config, offer)
        self._key = KeyShare(self._group)
        self._transcript = Transcript(suite.hash_name)
        self._transcript.update(raw)
        self._master = b""
        self._pending_read: Tls12RecordCipher | None = None
        self._pending_write: Tls12RecordCipher | None = None
        self.state = Server12State.WAIT_CLIENT_KEY_EXCHANGE
        self._negotiated = ev.HandshakeComplete(
            version=ProtocolVersion.TLS12,
            cipher_suite=suite.suite,
            group=self._group,
            alpn_protocol=alpn,
            server_name=offer.server_name,
            ja4=ja4,
        )
        self._send_first_flight(hello, offer, alpn, certified, scheme)

    @staticmethod
    def _check_renegotiation_info(hello: ClientHello, offer: ClientHelloOffer) -> None:
        if offer.renegotiation_info:
            # RFC 5746 3.6: an initial handshake must carry an empty renegotiated_connection.
            raise handshake_failure("non-empty renegotiation_info in an initial handshake")

    def _send_first_flight(
        self,
        hello: ClientHello,
        offer: ClientHelloOffer,
        alpn: str | None,
        certified: CertifiedKey,
        scheme: SignatureScheme,
    ) -> None:
        extensions: list[Extension] = []
        secure_renegotiation = (
            offer.renegotiation_info is not None
            or CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV in hello.cipher_suites
        )
        if secure_renegotiation:
            extensions.append((ExtensionType.RENEGOTIATION_INFO, b"\x00"))
        if self._ems:
            extensions.append((ExtensionType.EXTENDED_MASTER_SECRET, b""))
        if offer.ec_point_formats is not None:
            extensions.append((ExtensionType.EC_POINT_FORMATS, b"\x01\x00"))
        if alpn is not None:
            extensions.append((ExtensionType.ALPN, push_alpn((alpn,))))
        if offer.heartbeat_mode is not None and self._conn.heartbeat_enabled:
            heartbeat = bytes((HeartbeatMode.PEER_ALLOWED_TO_SEND,))
            extensions.append((ExtensionType.HEARTBEAT, heartbeat))
            self._conn.heartbeat_negotiated = True
        # Resumption (session tickets) comes later; the session id is left empty, which tells
        # the client this session cannot be resumed by id.
        server_hello = ServerHello(
            ProtocolVersion.TLS12, self._server_random, b"", self._suite.suite, 0, tuple(extensions)
        )
        w = Writer()
        push_server_hello(w, server_hello)
        flight = handshake_message(HandshakeType.SERVER_HELLO, w.getvalue())

        w = Writer()
        push_certificate12(w, tuple(c.public_bytes(Encoding.DER) for c in certified.chain))
        flight += handshake_message(HandshakeType.CERTIFICATE, w.getvalue())

        params = ServerKeyExchangeECDHE(self._group, self._key.share, scheme, b"")
        signed = self._client_random + self._server_random + params.params()
        params = ServerKeyExchangeECDHE(
            self._group, self._key.share, scheme, certified.signer.sign(scheme, signed)
        )
        w = Writer()
        push_server_key_exchange(w, params)
        flight += handshake_message(HandshakeType.SERVER_KEY_EXCHANGE, w.getvalue())
        flight += handshake_message(HandshakeType.SERVER_HELLO_DONE, b"")
        self._transcript.update(flight)
        self._conn.send_handshake_bytes(flight)

    def handle(self, msg_type: int, body: bytes, raw: bytes, now: float) -> None:
        if self.state is Server12State.WAIT_CLIENT_KEY_EXCHANGE:
            if msg_type == HandshakeType.CERTIFICATE:
                raise unexpected_message("client Certificate without a CertificateRequest")
            if msg_type != HandshakeType.CLIENT_KEY_EXCHANGE:
                raise unexpected_message(f"expected ClientKeyExchange, got {msg_type}")
            self._on_client_key_exchange(body, raw)
        elif self.state is Server12State.WAIT_FINISHED:
            if msg_type != HandshakeType.FINISHED:
                raise unexpected_message(f"expected Finished, got {msg_type}")
            self._on_finished(body, raw)
        else:
            raise unexpected_message(f"handshake message {msg_type} in state {self.state.name}")

    def _on_client_key_exchange(self, body: bytes, raw: bytes) -> None:
        public = pull_client_key_exchange(Reader(body))
        premaster = self._key.shared_secret(public)
        self._transcript.update(raw)
        session_hash = self._transcript.digest() if self._ems else None
        self._master = master_secret(
            self._suite, premaster, self._client_random, self._server_random, session_hash
        )
        client_key, server_key, client_iv, server_iv = key_block(
            self._suite, self._master, self._client_random, self._server_random
        )
        self._pending_read = Tls12RecordCipher(self._suite, client_key, client_iv)
        self._pending_write = Tls12RecordCipher(self._suite, server_key, server_iv)
        self.state = Server12State.WAIT_CHANGE_CIPHER_SPEC

    def change_cipher_spec(self) -> None:
        if self.state is not Server12State.WAIT_CHANGE_CIPHER_SPEC or self._pending_read is None:
            raise unexpected_message("change_cipher_spec out of order")
        self._conn.install_read_cipher(self._pending_read)
        self._pending_read = None
        self.state = Server12State.WAIT_FINISHED

    def _on_finished(self, body: bytes, raw: bytes) -> None:
        finished = pull_finished(Reader(body), 12)
        expected = finished_verify_data(
            self._suite, self._master, server=False, transcript_hash=self._transcript.digest()
        )
        if not hmac.compare_digest(finished.verify_data, expected):
            raise TLSError(AlertDescription.DECRYPT_ERROR, "client Finished does not verify")
        self._transcript.update(raw)
        assert self._pending_write is not None
        self._conn.send_change_cipher_spec()
        self._conn.install_write_cipher(self._pending_write)
        self._pending_write = None
        verify_data = finished_verify_data(
            self._suite, self._master, server=True, transcript_hash=self._transcript.digest()
        )
        self._conn.send_handshake(HandshakeType.FINISHED, verify_data)
        self.state = Server12State.CONNECTED
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
